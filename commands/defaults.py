"""Stored /imagine defaults (a server's, a channel's, a user's), checked against today's limits: pure functions
shared by /settings (when they are set) and /imagine (when they are used)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.layers import SOURCE_NAMES, USER
from engine.prompts.flags import parse_ratio, size_for_aspect
from engine.errors import InvalidParamsError
from engine.params import Limits, ModelDefaults, build_params


def layer_options(defaults: Mapping[str, Any], *, model_defaults: ModelDefaults, max_pixels: int) -> dict[str, Any]:
    """A layer's defaults as build_params options: the model is chosen apart, an aspect ratio becomes a size of
    about the model's own pixel count (as `--ar` does)."""
    options = {key: value for key, value in defaults.items() if key not in ("model", "style")}
    if "aspect" in options:
        ratio_w, ratio_h = parse_ratio(str(options.pop("aspect")), "The aspect ratio")
        options["width"], options["height"] = size_for_aspect(
            ratio_w, ratio_h, base_pixels=model_defaults.width * model_defaults.height, max_pixels=max_pixels
        )
    return options


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
    defaults: Mapping[str, Any],
    *,
    model: str,
    limits: Limits,
    model_defaults: ModelDefaults,
    notes: list[str],
    source: str = USER,
) -> dict[str, Any]:
    """One layer's defaults as /imagine uses them: if an admin has since lowered a limit (or the model changed)
    so that they break, that layer is not used (with a note) rather than refusing the request for something the
    user did not ask for this time."""
    if not defaults:
        return {}
    try:
        options = layer_options(defaults, model_defaults=model_defaults, max_pixels=limits.max_pixels)
        return checked_defaults(options, model=model, limits=limits, model_defaults=model_defaults)
    except InvalidParamsError as err:
        whose = "Your /settings" if source == USER else f"{SOURCE_NAMES[source].capitalize()}'s"
        notes.append(f"{whose} defaults were not used: {err} See `/settings show`.")
        return {}


def merged_layer(stored: Mapping[str, Any], changes: Mapping[str, Any], cleared: set[str]) -> dict[str, Any]:
    """A layer after an admin's change: cleared keys go, changed keys are set; a size and an aspect ratio replace
    each other within the layer."""
    merged = {key: value for key, value in stored.items() if key not in cleared}
    if "aspect" in changes:
        merged.pop("width", None)
        merged.pop("height", None)
    if "width" in changes or "height" in changes:
        merged.pop("aspect", None)
    return merged | dict(changes)


def checked_layer(
    defaults: Mapping[str, Any], *, model: str, limits: Limits, model_defaults: ModelDefaults
) -> dict[str, Any]:
    """A server's or channel's defaults as they are stored (the aspect ratio kept as a ratio), with canonical
    sampler and schedule names; InvalidParamsError if today's limits refuse them."""
    options = layer_options(defaults, model_defaults=model_defaults, max_pixels=limits.max_pixels)
    canonical = checked_defaults(options, model=model, limits=limits, model_defaults=model_defaults)
    stored = dict(defaults)
    for key in ("sampler", "schedule"):
        if key in canonical:
            stored[key] = canonical[key]
    return stored
