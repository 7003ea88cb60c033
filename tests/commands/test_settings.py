"""/settings' pure helpers: showing, canonicalising and checking a user's defaults."""

from __future__ import annotations

import pytest

from commands.defaults import checked_defaults
from commands.settings import defaults_text
from engine.errors import InvalidParamsError
from engine.params import Limits, ModelDefaults

LIMITS = Limits(max_steps=50)


def check(defaults: dict[str, object], limits: Limits = LIMITS) -> dict[str, object]:
    return checked_defaults(defaults, model="m", limits=limits, model_defaults=ModelDefaults())


def test_sampler_names_are_stored_canonical_and_a_combined_name_gives_its_schedule() -> None:
    assert check({"sampler": "euler a", "steps": 30}) == {"sampler": "Euler a", "steps": 30}
    assert check({"sampler": "Euler Karras"}) == {"sampler": "Euler", "schedule": "Karras"}


def test_defaults_over_the_limits_are_refused() -> None:
    with pytest.raises(InvalidParamsError, match="Steps must be between 1 and 50"):
        check({"steps": 80})


def test_defaults_text_lists_what_is_set_in_a_fixed_order() -> None:
    assert defaults_text({"steps": 30, "sampler": "Euler a"}).splitlines()[1:] == [
        "- Sampler: `Euler a`",
        "- Steps: `30`",
    ]
    assert "no defaults" in defaults_text({})
