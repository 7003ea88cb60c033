"""A1111 sampler and schedule names -> canonical (sampler, schedule), as pasted or typed."""

import pytest

from engine.errors import InvalidParamsError
from engine.samplers import (
    SAMPLERS,
    effective_schedule,
    resolve_sampler,
    sampler_names,
    sampler_spec,
    schedule_names,
)


def resolved(name: str, schedule: str | None = None) -> tuple[str, str]:
    spec, label = resolve_sampler(name, schedule)
    return spec.name, label


@pytest.mark.parametrize("name", [s.name for s in SAMPLERS])
def test_every_display_name_resolves_to_itself(name: str) -> None:
    assert resolved(name) == (name, "Automatic")
    assert resolve_sampler(name)[0] is sampler_spec(name)


@pytest.mark.parametrize(("alias", "name"), [(a, s.name) for s in SAMPLERS for a in s.aliases])
def test_every_alias_resolves_to_its_display_name(alias: str, name: str) -> None:
    assert resolved(alias)[0] == name


def test_names_are_case_and_space_insensitive() -> None:
    assert resolved("  euler   A ") == ("Euler a", "Automatic")


def test_old_combined_name_with_the_default_schedule_reads_as_automatic() -> None:
    assert resolved("DPM++ 2M Karras") == ("DPM++ 2M", "Automatic")


def test_old_combined_name_with_another_schedule_keeps_it() -> None:
    assert resolved("DPM++ 2M SDE Karras") == ("DPM++ 2M SDE", "Karras")


def test_old_combined_exponential_name_is_the_automatic_default() -> None:
    assert resolved("DPM++ 2M SDE Exponential") == ("DPM++ 2M SDE", "Automatic")


def test_combined_name_suffix_wins_over_a_pasted_automatic_schedule() -> None:
    assert resolved("DPM++ 2M SDE Karras", "Automatic") == ("DPM++ 2M SDE", "Karras")


def test_combined_name_by_internal_schedule_name() -> None:
    assert resolved("Euler karras") == ("Euler", "Karras")


def test_euler_a_sgm_uniform_keeps_the_users_sampler() -> None:
    # A1111 matches "Uniform" first and falls back to DPM++ 2M; Easel keeps what the user meant.
    assert resolved("Euler a SGM Uniform") == ("Euler a", "SGM Uniform")


def test_explicit_schedule_is_applied() -> None:
    assert resolved("Euler", "Karras") == ("Euler", "Karras")


def test_explicit_schedule_alias_is_accepted() -> None:
    assert resolved("Euler", "SGMUniform") == ("Euler", "SGM Uniform")


def test_explicit_default_schedule_reads_as_automatic() -> None:
    assert resolved("DPM++ 2M", "Karras") == ("DPM++ 2M", "Automatic")


def test_timestep_samplers_ignore_the_schedule() -> None:
    assert resolved("DDIM", "Karras") == ("DDIM", "Automatic")


def test_unknown_sampler_is_refused_with_close_matches() -> None:
    with pytest.raises(InvalidParamsError, match=r"Unknown sampler 'DPM\+\+ 2N'\. Did you mean DPM\+\+ 2M"):
        resolve_sampler("DPM++ 2N")


def test_unknown_schedule_is_refused_with_close_matches() -> None:
    with pytest.raises(InvalidParamsError, match=r"Unknown schedule type 'Karas'\. Did you mean Karras"):
        resolve_sampler("Euler", "Karas")


def test_every_a1111_schedule_type_is_accepted() -> None:
    for label in schedule_names():
        assert resolved("Euler", label) == ("Euler", label)


def test_every_a1111_sampler_is_in_the_table_once() -> None:
    assert len(sampler_names()) == len(set(sampler_names())) == 20


def test_sampler_table_is_in_a1111_ui_order() -> None:
    assert sampler_names()[:4] == ["DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun"]


def test_each_family_runs_the_samplers_a1111_runs_that_way() -> None:
    families = {s.name: s.family for s in SAMPLERS}
    assert [n for n, f in families.items() if f == "a1111-timesteps"] == ["DDIM", "DDIM CFG++", "PLMS", "UniPC"]
    assert set(families.values()) == {"k-diffusion", "a1111-timesteps"}  # every sampler is A1111's own algorithm
    assert families["LCM"] == "k-diffusion"  # A1111's own LCM: a k-diffusion sampler on LCM's 50 timesteps


def test_effective_schedule_names_the_automatic_default() -> None:
    assert effective_schedule(sampler_spec("DPM++ 2M"), "Automatic") == "Karras"


def test_effective_schedule_stays_automatic_without_a_default() -> None:
    assert effective_schedule(sampler_spec("Euler a"), "Automatic") == "Automatic"


def test_a_timestep_sampler_takes_no_schedule_type() -> None:
    assert sampler_spec("DDIM").timesteps and not sampler_spec("Euler").timesteps


def test_lcm_takes_schedule_types_as_a1111s_k_diffusion_lcm_does() -> None:
    spec, schedule = resolve_sampler("LCM Karras", None)
    assert (spec.name, schedule) == ("LCM", "Karras")
    assert resolve_sampler("LCM", "Exponential")[1] == "Exponential"
