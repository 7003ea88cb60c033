"""GenerationParams: the frozen, validated, serialisable unit of work that is queued, stored and replayed.

Raw input (slash options, CLI flags, pasted parameter text) becomes a `GenerationParams` in one pure function,
`build_params`; nothing after that re-parses or re-validates.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import InvalidParamsError
from engine.samplers import resolve_sampler

# A1111 draws random seeds with random.randrange(4294967294); torch accepts seeds up to 2**64 - 1.
RANDOM_SEED_RANGE = 4294967294
MAX_SEED = 2**64 - 1
MAX_PROMPT_CHARS = 4000


@dataclass(frozen=True)
class Limits:
    """Ceilings an admin sets; a request over any of them is refused before queueing."""

    max_steps: int = 150
    max_pixels: int = 1024 * 1024
    max_side: int = 2048
    max_batch: int = 4
    min_side: int = 64


@dataclass(frozen=True)
class ModelDefaults:
    """What a model draws best at when the request does not say (size, CFG, sampler)."""

    width: int = 512
    height: int = 512
    cfg_scale: float = 7.0
    steps: int = 20
    sampler: str = "DPM++ 2M"


@dataclass(frozen=True)
class GenerationParams:
    """One fully resolved request: every seed known, every name canonical. Immutable."""

    prompt: str
    model: str
    seed: int
    negative_prompt: str = ""
    steps: int = 20
    sampler: str = "DPM++ 2M"
    schedule: str = "Automatic"
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    batch_size: int = 1
    subseed: int = 0
    subseed_strength: float = 0.0
    clip_skip: int = 1
    extra: tuple[tuple[str, str], ...] = field(default=())

    def image_seeds(self) -> list[int]:
        """A1111's per-image seeds: seed + i, except that a variation batch keeps the seed for every image."""
        if self.subseed_strength > 0:
            return [self.seed] * self.batch_size
        return [(self.seed + i) % (MAX_SEED + 1) for i in range(self.batch_size)]

    def image_subseeds(self) -> list[int]:
        return [(self.subseed + i) % (MAX_SEED + 1) for i in range(self.batch_size)]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["extra"] = [list(pair) for pair in self.extra]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerationParams:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["extra"] = tuple((str(k), str(v)) for k, v in values.get("extra", ()))
        return cls(**values)

    def replace(self, **changes: Any) -> GenerationParams:
        return dataclasses.replace(self, **changes)


def resolve_seed(value: int | str | None, rng: random.Random | None = None) -> int:
    """A1111's get_fixed_seed: empty, None or -1 mean a fresh random seed; anything else must be 0..2**64-1."""
    if value is None or (isinstance(value, str) and value.strip() in {"", "-1"}) or value == -1:
        return (rng or random.SystemRandom()).randrange(RANDOM_SEED_RANGE)
    try:
        seed = int(str(value).strip())
    except ValueError:
        raise InvalidParamsError(f"Seed must be a whole number (or -1 for random), not {value!r}.") from None
    if not 0 <= seed <= MAX_SEED:
        raise InvalidParamsError(f"Seed must be between 0 and {MAX_SEED} (or -1 for random), not {seed}.")
    return seed


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidParamsError(f"{name} must be a whole number, not {value!r}.")
    if isinstance(value, int):
        return value
    try:
        as_float = float(str(value).strip())
    except ValueError:
        raise InvalidParamsError(f"{name} must be a whole number, not {value!r}.") from None
    if not as_float.is_integer():
        raise InvalidParamsError(f"{name} must be a whole number, not {value!r}.")
    return int(as_float)


def _as_float(name: str, value: Any) -> float:
    try:
        result = float(str(value).strip())
    except ValueError:
        raise InvalidParamsError(f"{name} must be a number, not {value!r}.") from None
    if not math.isfinite(result):
        raise InvalidParamsError(f"{name} must be a finite number, not {value!r}.")
    return result


def _check_range(name: str, value: float, low: float, high: float, hint: str = "") -> None:
    if not low <= value <= high:
        raise InvalidParamsError(f"{name} must be between {low:g} and {high:g}, not {value:g}.{hint}")


def build_params(
    options: Mapping[str, Any],
    *,
    model: str,
    limits: Limits,
    defaults: ModelDefaults | None = None,
    rng: random.Random | None = None,
) -> GenerationParams:
    """Turn raw options (all optional except `prompt`) into validated params, or raise InvalidParamsError.

    `options` keys: prompt, negative_prompt, steps, sampler, schedule, cfg_scale, seed, width, height,
    batch_size, subseed, subseed_strength, clip_skip. `model` is already resolved by the registry.
    """
    d = defaults or ModelDefaults()
    unknown = set(options) - {
        "prompt", "negative_prompt", "steps", "sampler", "schedule", "cfg_scale", "seed", "width", "height",
        "batch_size", "subseed", "subseed_strength", "clip_skip",
    }  # fmt: skip
    if unknown:
        raise InvalidParamsError(f"Unknown option(s): {', '.join(sorted(unknown))}.")

    def opt(key: str) -> Any:
        value = options.get(key)
        return None if value is None or (isinstance(value, str) and value.strip() == "") else value

    prompt = str(options.get("prompt") or "")
    negative = str(options.get("negative_prompt") or "")
    for label, text in (("Prompt", prompt), ("Negative prompt", negative)):
        if len(text) > MAX_PROMPT_CHARS:
            raise InvalidParamsError(f"{label} is {len(text)} characters; the limit is {MAX_PROMPT_CHARS}.")

    steps = _as_int("Steps", opt("steps") if opt("steps") is not None else d.steps)
    _check_range("Steps", steps, 1, limits.max_steps)

    cfg = _as_float("CFG scale", opt("cfg_scale") if opt("cfg_scale") is not None else d.cfg_scale)
    _check_range("CFG scale", cfg, 0.0, 30.0)

    width = _as_int("Width", opt("width") if opt("width") is not None else d.width)
    height = _as_int("Height", opt("height") if opt("height") is not None else d.height)
    for label, side in (("Width", width), ("Height", height)):
        if side % 8:
            raise InvalidParamsError(
                f"{label} must be a multiple of 8 (try {max(8, side // 8 * 8)} or {side // 8 * 8 + 8}), not {side}."
            )
        _check_range(label, side, limits.min_side, limits.max_side)
    if width * height > limits.max_pixels:
        raise InvalidParamsError(
            f"{width}x{height} is {width * height:,} pixels; this server allows at most {limits.max_pixels:,} "
            f"(e.g. {_fit_hint(width, height, limits.max_pixels)})."
        )

    batch = _as_int("Batch size", opt("batch_size") if opt("batch_size") is not None else 1)
    _check_range("Batch size", batch, 1, limits.max_batch)

    sampler, schedule = resolve_sampler(
        str(opt("sampler") or d.sampler), str(opt("schedule")) if opt("schedule") is not None else None
    )

    strength = _as_float("Variation strength", opt("subseed_strength") or 0.0)
    _check_range("Variation strength", strength, 0.0, 1.0)

    clip_skip = _as_int("Clip skip", opt("clip_skip") or 1)
    _check_range("Clip skip", clip_skip, 1, 12)

    seed = resolve_seed(opt("seed"), rng)
    subseed = resolve_seed(opt("subseed"), rng) if strength > 0 else 0
    return GenerationParams(
        prompt=prompt,
        negative_prompt=negative,
        model=model,
        seed=seed,
        steps=steps,
        sampler=sampler,
        schedule=schedule,
        cfg_scale=cfg,
        width=width,
        height=height,
        batch_size=batch,
        subseed=subseed,
        subseed_strength=strength,
        clip_skip=clip_skip,
    )


def _fit_hint(width: int, height: int, max_pixels: int) -> str:
    scale = (max_pixels / (width * height)) ** 0.5
    return f"{int(width * scale) // 8 * 8}x{int(height * scale) // 8 * 8}"
