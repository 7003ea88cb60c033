"""A1111 sampler and schedule names -> canonical (sampler, schedule), as pasted or typed."""

import pytest

from engine.errors import InvalidParamsError
from engine.samplers import (
    SAMPLERS,
    infotext_schedule,
    resolve_sampler,
    sampler_names,
    schedule_names,
)

SUPPORTED = [s for s in SAMPLERS if not s.unsupported]


@pytest.mark.parametrize("name", [s.name for s in SUPPORTED])
def test_every_supported_display_name_resolves_to_itself(name: str) -> None:
    assert resolve_sampler(name) == (name, "Automatic")


@pytest.mark.parametrize(("alias", "name"), [(a, s.name) for s in SUPPORTED for a in s.aliases])
def test_every_alias_resolves_to_its_display_name(alias: str, name: str) -> None:
    assert resolve_sampler(alias)[0] == name


def test_names_are_case_and_space_insensitive() -> None:
    assert resolve_sampler("  euler   A ") == ("Euler a", "Automatic")


def test_old_combined_name_with_the_default_schedule_reads_as_automatic() -> None:
    assert resolve_sampler("DPM++ 2M Karras") == ("DPM++ 2M", "Automatic")


def test_old_combined_name_with_another_schedule_keeps_it() -> None:
    assert resolve_sampler("DPM++ 2M SDE Karras") == ("DPM++ 2M SDE", "Karras")


def test_old_combined_exponential_name_is_the_automatic_default() -> None:
    assert resolve_sampler("DPM++ 2M SDE Exponential") == ("DPM++ 2M SDE", "Automatic")


def test_combined_name_suffix_wins_over_a_pasted_automatic_schedule() -> None:
    assert resolve_sampler("DPM++ 2M SDE Karras", "Automatic") == ("DPM++ 2M SDE", "Karras")


def test_combined_name_by_internal_schedule_name() -> None:
    assert resolve_sampler("Euler karras") == ("Euler", "Karras")


def test_euler_a_sgm_uniform_keeps_the_users_sampler() -> None:
    # A1111 matches "Uniform" first and falls back to DPM++ 2M; Easel keeps what the user meant.
    assert resolve_sampler("Euler a SGM Uniform") == ("Euler a", "SGM Uniform")


def test_explicit_schedule_is_applied() -> None:
    assert resolve_sampler("Euler", "Karras") == ("Euler", "Karras")


def test_explicit_schedule_alias_is_accepted() -> None:
    assert resolve_sampler("Euler", "SGMUniform") == ("Euler", "SGM Uniform")


def test_explicit_default_schedule_reads_as_automatic() -> None:
    assert resolve_sampler("DPM++ 2M", "Karras") == ("DPM++ 2M", "Automatic")


def test_timestep_samplers_ignore_the_schedule() -> None:
    assert resolve_sampler("DDIM", "Karras") == ("DDIM", "Automatic")


def test_unknown_sampler_is_refused_with_close_matches() -> None:
    with pytest.raises(InvalidParamsError, match=r"Unknown sampler 'DPM\+\+ 2N'\. Did you mean DPM\+\+ 2M"):
        resolve_sampler("DPM++ 2N")


def test_unknown_schedule_is_refused_with_close_matches() -> None:
    with pytest.raises(InvalidParamsError, match=r"Unknown schedule type 'Karas'\. Did you mean Karras"):
        resolve_sampler("Euler", "Karas")


def test_every_a1111_schedule_type_is_accepted() -> None:
    for label in schedule_names(supported_only=False):
        assert resolve_sampler("Euler", label) == ("Euler", label)


def test_every_a1111_sampler_is_supported() -> None:
    assert sampler_names() == sampler_names(supported_only=False)
    assert len(sampler_names()) == 20


def test_sampler_table_is_in_a1111_ui_order() -> None:
    assert sampler_names(supported_only=False)[:4] == ["DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun"]


def test_infotext_schedule_names_the_automatic_default() -> None:
    assert infotext_schedule("DPM++ 2M", "Automatic") == "Karras"


def test_infotext_schedule_stays_automatic_without_a_default() -> None:
    assert infotext_schedule("Euler a", "Automatic") == "Automatic"
