"""Stored /imagine defaults (a server's, a channel's, a user's) as /settings checks them when they are set: pure
functions. When they are used, the request resolver checks them key by key (`engine.request.usable_layer`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.params import Limits, ModelDefaults, build_params
from engine.request import layer_options


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
