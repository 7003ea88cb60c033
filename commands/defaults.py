"""A user's stored /imagine defaults, checked against today's limits: pure functions shared by /settings (when
they are set) and /imagine (when they are used)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import InvalidParamsError
from engine.params import Limits, ModelDefaults, build_params


def checked_defaults(
    defaults: Mapping[str, Any], *, model: str, limits: Limits, model_defaults: ModelDefaults
) -> dict[str, Any]:
    """The defaults with canonical sampler/schedule names, or InvalidParamsError if today's limits refuse them."""
    params = build_params({**defaults, "prompt": ""}, model=model, limits=limits, defaults=model_defaults)
    canonical = dict(defaults)
    if "sampler" in defaults:
        canonical["sampler"] = params.sampler
        if params.schedule != "Automatic":  # a combined name such as "DPM++ 2M Karras" carries a schedule
            canonical["schedule"] = params.schedule
    if "schedule" in defaults:
        canonical["schedule"] = params.schedule
    return canonical


def usable_defaults(
    defaults: Mapping[str, Any], *, model: str, limits: Limits, model_defaults: ModelDefaults, notes: list[str]
) -> dict[str, Any]:
    """A user's defaults as /imagine uses them: if an admin has since lowered a limit they break, none are used
    (with a note) rather than refusing the request for something the user did not ask for this time."""
    if not defaults:
        return {}
    try:
        return checked_defaults(defaults, model=model, limits=limits, model_defaults=model_defaults)
    except InvalidParamsError as err:
        notes.append(f"Your /settings defaults were not used: {err} See `/settings show`.")
        return {}
