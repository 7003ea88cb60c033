"""Defaults layered server -> channel -> user -> request, and ceilings that win over every layer: pure functions.

A layer is what one scope stored: the server's and the channel's (set by admins), the user's own (`/settings
set`). Each effective value remembers the layer it came from, so `/settings show` can say. Ceilings (max steps,
pixels, batch, queued jobs per user) only ever lower the owner's configured limits: the lowest of config, server
and channel wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from engine.errors import InvalidParamsError
from engine.params import Limits
from engine.request import CONFIG, SOURCE_NAMES, Layer

# Stored key -> how it is named to users, in the order /settings show lists them.
DEFAULT_LABELS = {
    "model": "Model",
    "vae": "VAE",
    "sampler": "Sampler",
    "schedule": "Schedule type",
    "steps": "Steps",
    "width": "Width",
    "height": "Height",
    "aspect": "Aspect ratio",
    "cfg_scale": "CFG scale",
    "distilled_cfg_scale": "Distilled CFG scale",
    "negative_prompt": "Negative prompt",
    "clip_skip": "Clip skip",
    "batch_size": "Batch size",
    "style": "Style",
    "upscaler": "Upscaler",
    "detailer": "Detailer",
}
CEILING_LABELS = {
    "max_steps": "Max steps",
    "max_pixels": "Max pixels",
    "max_batch": "Max batch size",
    "max_queue": "Max queued jobs per user",
}


@dataclass(frozen=True)
class Ceilings:
    """The limits in force in one channel, and which layer set each."""

    limits: Limits
    max_queue: int
    sources: Mapping[str, str]

    @property
    def queue_cap(self) -> int | None:
        """The per-user queue cap a job must carry: a server's or channel's ceiling; None where the config's holds
        (the executor enforces that one itself)."""
        return self.max_queue if self.sources.get("max_queue", CONFIG) != CONFIG else None

    def value(self, key: str) -> int:
        return self.max_queue if key == "max_queue" else int(getattr(self.limits, key))


def ceilings(limits: Limits, max_queue: int, layers: Sequence[Layer]) -> Ceilings:
    """The lowest of the configured limits and every layer's ceilings."""
    current = {key: (Ceilings(limits, max_queue, {}).value(key), CONFIG) for key in CEILING_LABELS}
    for layer in layers:
        for key, value in layer.ceilings.items():
            if key in current and value < current[key][0]:
                current[key] = (value, layer.source)
    max_pixels = current["max_pixels"][0]
    lowered = replace(
        limits,
        max_steps=current["max_steps"][0],
        max_pixels=max_pixels,
        max_batch=current["max_batch"][0],
        # A lowered pixel ceiling lowers the size after hires fix in proportion.
        max_hires_pixels=min(limits.max_hires_pixels, max_pixels * limits.max_hires_pixels // limits.max_pixels),
    )
    return Ceilings(lowered, current["max_queue"][0], {key: source for key, (_, source) in current.items()})


def checked_ceilings(changes: Mapping[str, int], configured: Ceilings) -> dict[str, int]:
    """Ceilings an admin asks for, refused when they would raise a configured limit (admins can only lower)."""
    for key, value in changes.items():
        label = CEILING_LABELS[key]
        if value < 1:
            raise InvalidParamsError(f"{label} must be at least 1.")
        if value > configured.value(key):
            raise InvalidParamsError(
                f"{label} can be at most {configured.value(key):,} here (the bot's config); ceilings only lower it."
            )
    return dict(changes)


def show_text(effective: Mapping[str, tuple[Any, str]], limits: Ceilings, *, model: tuple[str, str]) -> str:
    """`/settings show`: every effective default and ceiling with the layer it comes from."""
    lines = ["**Your /imagine settings here** (options you give in a request still win; ceilings win over all)"]
    shown = {"model": model, **effective}
    for key, label in DEFAULT_LABELS.items():
        if key in shown:
            value, source = shown[key]
            lines.append(f"- {label}: `{str(value)[:200]}` ({_from(source)})")
    lines.append("Anything not listed comes from the model's own defaults.")
    lines.append("**Ceilings**")
    for key, label in CEILING_LABELS.items():
        lines.append(f"- {label}: `{limits.value(key):,}` ({_from(limits.sources[key])})")
    return "\n".join(lines)


def layer_text(scope: str, layer: Layer) -> str:
    """What one server or channel layer holds, after an admin changed it."""
    name = SOURCE_NAMES[scope].capitalize()
    if not layer.defaults and not layer.ceilings:
        return f"{name} has no defaults or ceilings of its own."
    lines = [f"**{name}'s settings**"]
    lines += [f"- {label}: `{layer.defaults[key]}`" for key, label in DEFAULT_LABELS.items() if key in layer.defaults]
    lines += [f"- {label}: `{layer.ceilings[key]:,}`" for key, label in CEILING_LABELS.items() if key in layer.ceilings]
    return "\n".join(lines)


def _from(source: str) -> str:
    return "the model" if source == "model" else f"from {SOURCE_NAMES.get(source, source)}"
