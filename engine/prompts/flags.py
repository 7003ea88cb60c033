"""Midjourney habits in the prompt: trailing `--ar 16:9 --no text, logo --seed 1 --steps 30 --cfg 6` become
options. A pure function; the request resolver (engine.request) layers them: explicit options win."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from engine.errors import InvalidParamsError

MAX_RATIO = 4.0  # --ar between 1:4 and 4:1: beyond that one side falls under the smallest size a model draws well
_FLAG = re.compile(r"(?:^|(?<=\s))--([A-Za-z][\w-]*)")
_RATIO = re.compile(r"^(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)$")
_KNOWN = "`--ar W:H`, `--no a, b`, `--seed N`, `--steps N`, `--cfg X`, `--guidance X`, `--tile`"
# `--guidance` is a Flux.1 dev model's distilled CFG scale (Forge's "Distilled CFG Scale", ComfyUI's FluxGuidance).
_VALUE_OPTIONS = {"seed": "seed", "steps": "steps", "cfg": "cfg_scale", "guidance": "distilled_cfg_scale"}


@dataclass(frozen=True)
class PromptFlags:
    """The prompt without its flags, the options they set, and the `--no` terms for the negative prompt."""

    prompt: str
    options: dict[str, Any] = field(default_factory=dict)
    avoid: tuple[str, ...] = ()

    def negative_prompt(self, negative: str) -> str:
        """`negative` with the `--no` terms appended (comma-separated, as a negative prompt is written)."""
        return ", ".join(part for part in (negative.strip(), *self.avoid) if part)


def parse_ratio(value: str, what: str) -> tuple[float, float]:
    """`16:9` -> (16.0, 9.0), or InvalidParamsError naming `what` (the flag or option that gave it)."""
    ratio = _RATIO.match(value.strip())
    if ratio is None:
        raise InvalidParamsError(f"{what} takes a ratio like `16:9` or `2:3`, not `{value[:40]}`.")
    ratio_w, ratio_h = float(ratio.group(1)), float(ratio.group(2))
    if ratio_w <= 0 or ratio_h <= 0 or not 1 / MAX_RATIO <= ratio_w / ratio_h <= MAX_RATIO:
        raise InvalidParamsError(f"{what} must be between 1:4 and 4:1, not `{value[:40]}`.")
    return ratio_w, ratio_h


def size_for_aspect(
    ratio_w: float, ratio_h: float, *, base_pixels: int, max_pixels: int, min_side: int = 64
) -> tuple[int, int]:
    """A width x height in multiples of 8 with the given aspect and about `base_pixels` pixels (more if the short
    side would fall under `min_side`, never more than `max_pixels`); the ratio is clamped to 1:4 ... 4:1."""
    ratio = min(max(ratio_w / ratio_h, 1 / MAX_RATIO), MAX_RATIO)
    pixels = min(max(base_pixels, min_side * min_side * max(ratio, 1 / ratio)), max_pixels)
    width = math.sqrt(pixels * ratio)
    height = width / ratio
    w, h = max(8, round(width / 8) * 8), max(8, round(height / 8) * 8)
    if w * h > max_pixels:  # rounding up on both sides can overshoot a tight limit
        w, h = max(8, math.floor(width / 8) * 8), max(8, math.floor(height / 8) * 8)
    return w, h


def read_flags(text: str, *, base_pixels: int, max_pixels: int) -> PromptFlags:
    """Split trailing `--flags` off a prompt. Unknown or malformed flags raise InvalidParamsError with a message
    for the user; values for seed/steps/cfg are passed on as text for build_params to check."""
    first = _FLAG.search(text)
    if first is None:
        return PromptFlags(text)
    prompt, tail = text[: first.start()].rstrip(), text[first.start() :]
    matches = list(_FLAG.finditer(tail))
    options: dict[str, Any] = {}
    avoid: list[str] = []
    seen: set[str] = set()
    for index, match in enumerate(matches):
        name = match.group(1).lower()
        end = matches[index + 1].start() if index + 1 < len(matches) else len(tail)
        value = tail[match.end() : end].strip()
        if name == "aspect":
            name = "ar"
        if name in seen:
            raise InvalidParamsError(f"`--{name}` is given twice.")
        seen.add(name)
        if name == "ar":
            ratio_w, ratio_h = parse_ratio(value, "`--ar`")
            options["width"], options["height"] = size_for_aspect(
                ratio_w, ratio_h, base_pixels=base_pixels, max_pixels=max_pixels
            )
        elif name == "no":
            avoid = [term.strip() for term in value.split(",") if term.strip()]
            if not avoid:
                raise InvalidParamsError("`--no` needs what to avoid, e.g. `--no text, watermark`.")
        elif name == "tile":  # Midjourney's seamless pattern: A1111's Tiling
            if value:
                raise InvalidParamsError("`--tile` takes no value.")
            options["tiling"] = True
        elif name in _VALUE_OPTIONS:
            if not value or len(value.split()) != 1:
                raise InvalidParamsError(f"`--{name}` takes one value, e.g. `--{name} {_example(name)}`.")
            options[_VALUE_OPTIONS[name]] = value
        else:
            raise InvalidParamsError(f"Unknown flag `--{name}`. At the end of a prompt Easel reads {_KNOWN}.")
    return PromptFlags(prompt, options, tuple(avoid))


def _example(name: str) -> str:
    return {"seed": "42", "steps": "30", "cfg": "6.5"}[name]
