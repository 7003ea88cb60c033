"""GenerationParams: the frozen, validated, serialisable unit of work that is queued, stored and replayed.

Raw input (slash options, CLI flags, pasted parameter text) becomes a `GenerationParams` in one pure function,
`build_params`; nothing after that re-parses or re-validates.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.detailer import MAX_TABS, DetailerTab, check_tab
from engine.errors import HiresTooLargeError, InvalidParamsError
from engine.samplers import resolve_sampler

# A1111 draws random seeds with random.randrange(4294967294); torch accepts seeds up to 2**64 - 1.
RANDOM_SEED_RANGE = 4294967294
MAX_SEED = 2**64 - 1
MAX_PROMPT_CHARS = 4000
RNG_SOURCES = ("GPU", "CPU", "NV")
# Latent upscalers (A1111 `latent_upscale_modes`) and the plain image resamplers that need no model.
HIRES_UPSCALERS = (
    "Latent",
    "Latent (antialiased)",
    "Latent (bicubic)",
    "Latent (bicubic antialiased)",
    "Latent (nearest)",
    "Latent (nearest-exact)",
    "None",
    "Lanczos",
    "Nearest",
)


@dataclass(frozen=True)
class Limits:
    """Ceilings an admin sets; a request over any of them is refused before queueing."""

    max_steps: int = 150
    max_pixels: int = 1024 * 1024  # the size asked for (hires fix's first pass)
    max_side: int = 2048
    max_batch: int = 4
    min_side: int = 64
    default_rng: str = "GPU"  # the server's RNG source when a request names none
    # The final size after hires fix: a 1024x1024 SDXL image upscaled x2 (4.2 MP) fits, as it does in A1111.
    max_hires_pixels: int = 2048 * 2048
    max_hires_side: int = 4096
    scope: str = "this server"  # who sets these, as messages name it
    settings_named: bool = False  # messages name the settings to change (the command line: the bot's config)

    def setting(self, name: str) -> str:
        """` (EASEL_NAME)` where messages name settings, else nothing."""
        return f" ({name})" if self.settings_named else ""


@dataclass(frozen=True)
class ModelDefaults:
    """What a model draws best at when the request does not say (size, steps, CFG, sampler and schedule, clip
    skip, VAE): its family's, or what the owner set for it."""

    width: int = 512
    height: int = 512
    cfg_scale: float = 7.0
    steps: int = 20
    sampler: str = "DPM++ 2M"
    schedule: str = "Automatic"
    clip_skip: int = 1
    vae: str | None = None  # a VAE from the VAE folder; None: the checkpoint's own
    distilled_cfg_scale: float = 3.5  # Flux dev's (Forge's default); Flux Fill's is 30 (Black Forest Labs')


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
    # Flux.1 dev's guidance embedding (Forge's "Distilled CFG Scale"); other models (and schnell) ignore it.
    distilled_cfg_scale: float = 3.5
    width: int = 512
    height: int = 512
    batch_size: int = 1
    subseed: int = 0
    subseed_strength: float = 0.0
    clip_skip: int = 1
    # img2img: the init image is a content hash in the blob store, so a stored job can be replayed.
    init_image: str | None = None
    denoising_strength: float | None = None
    # hires fix (A1111 §6): the first pass is width x height; the second upscales by hr_scale or to hr_resize.
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_upscaler: str = "Latent"
    hr_steps: int = 0
    hr_sampler: str | None = None  # the hires pass's own sampler; None: the same sampler ("Use same sampler")
    hr_schedule: str | None = None  # its own schedule type; None: the job's schedule ("Use same scheduler")
    # Forge's hires CFG and distilled CFG (`Hires CFG Scale`, `Hires Distilled CFG Scale`); None: the first pass's.
    hr_cfg_scale: float | None = None
    hr_distilled_cfg_scale: float | None = None
    seed_resize_from_w: int = 0
    seed_resize_from_h: int = 0
    rng: str = "GPU"  # A1111 RNG source: GPU (the device's torch.randn), CPU, or NV (NVIDIA's numbers anywhere)
    ensd: int = 0  # eta noise seed delta
    vae: str | None = None  # a VAE file's name (A1111's: with its extension); None: the checkpoint's own VAE
    # inpainting (A1111's img2img with a mask): the mask is a blob hash like the init image; white = repaint.
    mask: str | None = None
    mask_blur: int = 4
    inpainting_mask_invert: bool = False  # "Inpaint not masked"
    inpainting_fill: str = "original"  # Masked content: fill, original, latent noise, latent nothing
    inpaint_full_res: bool = False  # Inpaint area: Only masked
    inpaint_full_res_padding: int = 32
    initial_noise_multiplier: float = 1.0  # Noise multiplier (img2img)
    tiling: bool = False  # A1111's Tiling: circular padding in the UNet's and VAE's convolutions (seamless textures)
    # An upscale without diffusion (A1111's Extras): `init_image` (of `width` x `height`, any size) through this
    # upscaler by `upscale_by`, or to `upscale_to` ("WxH", Extras' Scale to, crop off). Nothing is sampled.
    extras_upscaler: str | None = None
    upscale_by: float = 0.0
    upscale_to: str = ""
    # ADetailer's tabs, run in order on each finished image (after hires fix); empty: no detailer.
    detailers: tuple[DetailerTab, ...] = ()
    # The detailer alone on the finished images of this job (Fix faces): their blob hashes, image 1 first. Nothing
    # else is sampled.
    detail_images: tuple[str, ...] = ()
    # `/describe`: `init_image` (of `width` x `height`) through this tagger; 0 thresholds take the tagger's own.
    tagger: str | None = None
    tag_threshold: float = 0.0
    character_threshold: float = 0.0

    @property
    def is_describe(self) -> bool:
        return self.tagger is not None

    @property
    def is_detail_only(self) -> bool:
        return bool(self.detail_images)

    @property
    def is_extras(self) -> bool:
        return self.extras_upscaler is not None

    def extras_scale(self) -> float:
        """The factor Extras upscales by: as given, or Scale to's larger ratio."""
        if self.upscale_to:
            target_w, target_h = (int(side) for side in self.upscale_to.split("x"))
            return max(target_w / self.width, target_h / self.height)
        return self.upscale_by

    def extras_size(self) -> tuple[int, int]:
        """The Extras output size: each side scaled, then cut down to a multiple of 8 (A1111's Upscaler.upscale)."""
        scale = self.extras_scale()
        return int((self.width * scale) // 8 * 8), int((self.height * scale) // 8 * 8)

    def image_seeds(self) -> list[int]:
        """A1111's per-image seeds: seed + i, except that a variation batch keeps the seed for every image."""
        if self.subseed_strength > 0:
            return [self.seed] * self.batch_size
        return [(self.seed + i) % (MAX_SEED + 1) for i in range(self.batch_size)]

    def image_subseeds(self) -> list[int]:
        return [(self.subseed + i) % (MAX_SEED + 1) for i in range(self.batch_size)]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["detailers"] = list(data["detailers"])  # as JSON gives them back
        data["detail_images"] = list(data["detail_images"])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerationParams:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "detail_images" in values:  # from JSON: a list
            values["detail_images"] = tuple(values["detail_images"] or ())
        if "detailers" in values:  # from JSON: a list of dicts
            values["detailers"] = tuple(
                tab if isinstance(tab, DetailerTab) else DetailerTab.from_dict(tab) for tab in values["detailers"] or ()
            )
        return cls(**values)

    def replace(self, **changes: Any) -> GenerationParams:
        return dataclasses.replace(self, **changes)


def shown(value: Any, limit: int = 40) -> str:
    """A value as a message quotes it: its repr, cut short (a pasted field can be thousands of characters, and a
    reply holds 2,000)."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def resolve_seed(value: int | str | None, rng: random.Random | None = None) -> int:
    """A1111's get_fixed_seed: empty, None or -1 mean a fresh random seed; anything else must be 0..2**64-1."""
    if value is None or (isinstance(value, str) and value.strip() in {"", "-1"}) or value == -1:
        return (rng or random.SystemRandom()).randrange(RANDOM_SEED_RANGE)
    try:
        seed = int(str(value).strip())
    except ValueError:
        raise InvalidParamsError(f"Seed must be a whole number (or -1 for random), not {shown(value)}.") from None
    if not 0 <= seed <= MAX_SEED:
        raise InvalidParamsError(f"Seed must be between 0 and {MAX_SEED} (or -1 for random), not {shown(seed)}.")
    return seed


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidParamsError(f"{name} must be a whole number, not {shown(value)}.")
    if isinstance(value, int):
        return value
    try:
        as_float = float(str(value).strip())
    except ValueError:
        raise InvalidParamsError(f"{name} must be a whole number, not {shown(value)}.") from None
    if not as_float.is_integer():
        raise InvalidParamsError(f"{name} must be a whole number, not {shown(value)}.")
    return int(as_float)


def _as_float(name: str, value: Any) -> float:
    try:
        result = float(str(value).strip())
    except ValueError:
        raise InvalidParamsError(f"{name} must be a number, not {shown(value)}.") from None
    if not math.isfinite(result):
        raise InvalidParamsError(f"{name} must be a finite number, not {shown(value)}.")
    return result


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "1", "yes", "on"}:
        return True
    if text in {"false", "0", "no", "off"}:
        return False
    raise InvalidParamsError(f"{name} must be true or false, not {shown(value)}.")


def _check_range(name: str, value: float, low: float, high: float, hint: str = "") -> None:
    if not low <= value <= high:
        raise InvalidParamsError(f"{name} must be between {low:g} and {high:g}, not {value:g}.{hint}")


@dataclass(frozen=True)
class _Option:
    """How one raw option is read: its label in messages, its parser, and its range check against the limits
    (the check alone, so that a stored layer of defaults can be checked key by key)."""

    label: str
    parse: Callable[[str, Any], Any]
    check: Callable[[str, Any, Limits], None] | None = None
    zero_is_unset: bool = False  # A1111's `value or default`: a 0 takes the default
    hires_only: bool = False  # checked only when hires fix is on (a txt2img job keeps whatever it carries)
    mask_only: bool = False  # checked (and kept) only with a mask


def _text(name: str, value: Any) -> str:
    text = str(value or "")
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidParamsError(f"{name} is {len(text)} characters; the limit is {MAX_PROMPT_CHARS}.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:  # a lone surrogate (raw JSON can carry one): no tokenizer reads it
        raise InvalidParamsError(
            f"{name} has a character that is not text at position {err.start + 1} (U+{ord(text[err.start]):04X})."
        ) from None
    return text


def _between(low: float, high: float | str) -> Callable[[str, Any, Limits], None]:
    """A range check; `high` may name a limit (`max_steps`)."""

    def check(name: str, value: Any, limits: Limits) -> None:
        top = float(getattr(limits, high)) if isinstance(high, str) else high
        _check_range(name, value, low, top)

    return check


def _side(name: str, value: Any, limits: Limits) -> None:
    if value % 8:
        raise InvalidParamsError(
            f"{name} must be a multiple of 8 (try {max(8, value // 8 * 8)} or {value // 8 * 8 + 8}), not {value}."
        )
    _check_range(name, value, limits.min_side, limits.max_side)


def _upscaler(name: str, value: Any, limits: Limits) -> None:
    """A latent mode, a plain resampler, or the name of an upscaler model (checked against the upscaler folder by
    the resolver, and by the engine that runs it)."""
    if value in HIRES_UPSCALERS or is_model_upscaler_name(value):
        return
    raise InvalidParamsError(
        f"Hires upscaler {shown(value)} is not an upscaler name; use one of: {', '.join(HIRES_UPSCALERS)}, "
        "or an installed upscaler model."
    )


def is_model_upscaler_name(value: Any) -> bool:
    """Whether a value can name an upscaler model file: not a mode, not a path, a sane length."""
    text = str(value)
    return (
        text not in HIRES_UPSCALERS
        and 0 < len(text) <= 120
        and text == text.strip()
        and not any(c in text for c in "/\\\0")
        and not text.startswith(".")
    )


def _rng(name: str, value: Any) -> str:
    source = str(value).upper()
    if source not in RNG_SOURCES:
        raise InvalidParamsError(f"RNG must be one of {', '.join(RNG_SOURCES)}, not {shown(source)}.")
    return source


def _seed_delta(name: str, value: Any, limits: Limits) -> None:
    if not 0 <= value <= MAX_SEED:
        raise InvalidParamsError(f"{name} must be between 0 and {MAX_SEED}, not {str(value)[:24]}.")


def _seed_resize(name: str, value: Any, limits: Limits) -> None:
    if value < 0 or value > limits.max_pixels:
        raise InvalidParamsError(f"Seed resize from must be a size within {limits.scope}'s limits.")


def _as_str(name: str, value: Any) -> str:
    return str(value)


MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")


def _masked_content(name: str, value: Any) -> str:
    text = str(value).strip().lower().replace("-", " ").replace("_", " ")
    if text not in MASKED_CONTENT:
        raise InvalidParamsError(f"Masked content must be one of {', '.join(MASKED_CONTENT)}, not {shown(value)}.")
    return text


def _mask_mode(name: str, value: Any) -> bool:
    """`Inpaint masked` / `Inpaint not masked` (A1111's text), or true/false for "invert"."""
    text = str(value).strip().lower()
    if text in ("inpaint masked", "inpaint not masked"):
        return text == "inpaint not masked"
    return _as_bool(name, value)


def _inpaint_area(name: str, value: Any) -> bool:
    """`Whole picture` / `Only masked` (A1111's text), or true/false for "only masked"."""
    text = str(value).strip().lower().replace("-", " ").replace("_", " ")
    if text in ("whole picture", "whole", "only masked", "masked"):
        return text in ("only masked", "masked")
    return _as_bool(name, value)


def _detailers(name: str, value: Any) -> tuple[DetailerTab, ...]:
    """The detailer option: a detector's name (one tab with ADetailer's defaults; "None" for none), or tabs."""
    if isinstance(value, str):
        text = value.strip()
        return () if text.lower() in ("", "none", "off") else (DetailerTab(model=text),)
    if isinstance(value, DetailerTab):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(tab if isinstance(tab, DetailerTab) else DetailerTab.from_dict(tab) for tab in value)
    raise InvalidParamsError(f"{name} must be a detector's name, not {shown(value)}.")


def _check_detailers(name: str, value: Any, limits: Limits) -> None:
    if len(value) > MAX_TABS:
        raise InvalidParamsError(f"{name}: at most {MAX_TABS} detailers run on one job, not {len(value)}.")
    for tab in value:
        check_tab(tab, limits.max_steps, limits.max_side)
        if tab.use_sampler:
            sampler = None if tab.sampler == "Use same sampler" else tab.sampler
            if sampler is not None:
                schedule = None if tab.scheduler == "Use same scheduler" else tab.scheduler
                resolve_sampler(sampler, schedule)


def _as_is(name: str, value: Any) -> Any:
    """Options read elsewhere: seeds (`resolve_seed`), the hires sampler, the VAE."""
    return value


# Every raw option: how it is read and checked on its own. `build_params` assembles them (defaults, the options
# that depend on each other); `check_option` checks one (a stored default).
OPTIONS: dict[str, _Option] = {
    "prompt": _Option("Prompt", _text),
    "negative_prompt": _Option("Negative prompt", _text),
    "steps": _Option("Steps", _as_int, _between(1, "max_steps")),
    "cfg_scale": _Option("CFG scale", _as_float, _between(0.0, 30.0)),
    "distilled_cfg_scale": _Option("Distilled CFG Scale", _as_float, _between(0.0, 30.0)),
    "width": _Option("Width", _as_int, _side),
    "height": _Option("Height", _as_int, _side),
    "batch_size": _Option("Batch size", _as_int, _between(1, "max_batch")),
    "sampler": _Option("Sampler", _as_str),
    "schedule": _Option("Schedule type", _as_str),
    "seed": _Option("Seed", _as_is),
    "subseed": _Option("Variation seed", _as_is),
    "subseed_strength": _Option("Variation strength", _as_float, _between(0.0, 1.0), zero_is_unset=True),
    "clip_skip": _Option("Clip skip", _as_int, _between(1, 12), zero_is_unset=True),
    "init_image": _Option("Init image", _as_str),
    "denoising_strength": _Option("Denoising strength", _as_float, _between(0.0, 1.0)),
    "enable_hr": _Option("Hires fix", _as_bool, zero_is_unset=True),
    "hr_scale": _Option("Hires upscale", _as_float, _between(1.0, 4.0), hires_only=True),
    "hr_resize_x": _Option("Hires width", _as_int, zero_is_unset=True),
    "hr_resize_y": _Option("Hires height", _as_int, zero_is_unset=True),
    "hr_upscaler": _Option("Hires upscaler", _as_str, _upscaler, zero_is_unset=True, hires_only=True),
    "hr_steps": _Option("Hires steps", _as_int, _between(0, "max_steps"), zero_is_unset=True, hires_only=True),
    "hr_sampler": _Option("Hires sampler", _as_is),
    "hr_schedule": _Option("Hires schedule type", _as_is),
    "hr_cfg_scale": _Option("Hires CFG Scale", _as_float, _between(0.0, 30.0), hires_only=True),
    "hr_distilled_cfg_scale": _Option("Hires Distilled CFG Scale", _as_float, _between(0.0, 30.0), hires_only=True),
    "seed_resize_from_w": _Option("Seed resize width", _as_int, _seed_resize, zero_is_unset=True),
    "seed_resize_from_h": _Option("Seed resize height", _as_int, _seed_resize, zero_is_unset=True),
    "rng": _Option("RNG", _rng, zero_is_unset=True),
    "ensd": _Option("ENSD", _as_int, _seed_delta, zero_is_unset=True),
    "vae": _Option("VAE", _as_is),
    "mask": _Option("Mask", _as_str),
    "mask_blur": _Option("Mask blur", _as_int, _between(0, 64), mask_only=True),
    "inpainting_mask_invert": _Option("Mask mode", _mask_mode, mask_only=True),
    "inpainting_fill": _Option("Masked content", _masked_content, mask_only=True),
    "inpaint_full_res": _Option("Inpaint area", _inpaint_area, mask_only=True),
    "inpaint_full_res_padding": _Option("Masked area padding", _as_int, _between(0, 256), mask_only=True),
    "initial_noise_multiplier": _Option("Noise multiplier", _as_float, _between(0.0, 1.5)),
    "tiling": _Option("Tiling", _as_bool, zero_is_unset=True),
    "detailers": _Option("Detailer", _detailers, _check_detailers, zero_is_unset=True),
}
OPTION_KEYS = frozenset(OPTIONS)


def is_unset(key: str, value: Any) -> bool:
    """Whether a raw value leaves the option to its default: None, blank text, or (A1111's `or`) a zero."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return True
    return OPTIONS[key].zero_is_unset and not value


def check_option(key: str, value: Any, limits: Limits) -> Any:
    """One raw option read and checked on its own (its type and range under `limits`): the typed value, or
    InvalidParamsError naming the option."""
    option = OPTIONS[key]
    typed = option.parse(option.label, value)
    if option.check is not None:
        option.check(option.label, typed, limits)
    return typed


# Far above any server's limits: a job that was resolved elsewhere (a worker reading it off the wire) is checked
# with the same readers as a request, without second-guessing the limits it was resolved under.
ANY_LIMITS = Limits(
    max_steps=10_000, max_pixels=1 << 30, max_side=1 << 15, max_batch=1024, min_side=8,
    max_hires_pixels=1 << 32, max_hires_side=1 << 16,
)  # fmt: skip


def check_params(params: GenerationParams, limits: Limits = ANY_LIMITS) -> None:
    """Resolved params read again by every option's rules and the sampler's: InvalidParamsError for what this
    version of Easel cannot run (a sampler a newer bot knows, a size that is not a multiple of 8...)."""
    if params.is_extras:
        check_extras(params, limits)
        return
    if params.is_describe:
        check_describe(params)
        return
    for key in OPTION_KEYS - {"seed", "subseed", "vae", "hr_sampler", "hr_schedule"}:
        value = getattr(params, key)
        if is_unset(key, value) or (OPTIONS[key].hires_only and not params.enable_hr):
            continue
        if OPTIONS[key].mask_only and params.mask is None:
            continue
        check_option(key, value, limits)
    for seed in (params.seed, params.subseed):
        if not 0 <= seed <= MAX_SEED:
            raise InvalidParamsError(f"Seed must be between 0 and {MAX_SEED}, not {seed}.")
    resolve_sampler(params.sampler, params.schedule)
    if params.hr_sampler is not None or params.hr_schedule is not None:
        _hires_sampler(params.hr_sampler, params.hr_schedule, params.sampler, params.schedule)


def build_params(
    options: Mapping[str, Any],
    *,
    model: str,
    limits: Limits,
    defaults: ModelDefaults | None = None,
    rng: random.Random | None = None,
) -> GenerationParams:
    """Turn raw options (any of `OPTIONS`, all optional) into validated params, or raise InvalidParamsError.

    Each option is read and checked by its entry in `OPTIONS`; what is assembled here is what depends on more
    than one: the model's defaults, the sampler with its schedule, the size against the pixel limit, and the
    img2img and hires fix rules. `model` is already resolved by the registry.
    """
    d = defaults or ModelDefaults()
    unknown = set(options) - OPTION_KEYS
    if unknown:
        raise InvalidParamsError(f"Unknown option(s): {', '.join(sorted(unknown))}.")
    given = {key: value for key, value in options.items() if not is_unset(key, value)}
    enable_hr = bool(check_option("enable_hr", given["enable_hr"], limits)) if "enable_hr" in given else False

    def value(key: str, fallback: Any) -> Any:
        """The option as given, else `fallback`, read and checked (hires-only checks only with hires fix on)."""
        raw = given.get(key, fallback)
        if OPTIONS[key].hires_only and not enable_hr:
            return OPTIONS[key].parse(OPTIONS[key].label, raw)
        return check_option(key, raw, limits)

    prompt = check_option("prompt", options.get("prompt"), limits)  # kept as typed, blank or not
    negative = check_option("negative_prompt", options.get("negative_prompt"), limits)
    steps = value("steps", d.steps)
    cfg = value("cfg_scale", d.cfg_scale)
    distilled_cfg = value("distilled_cfg_scale", d.distilled_cfg_scale)
    width, height = value("width", d.width), value("height", d.height)
    if width * height > limits.max_pixels:
        raise InvalidParamsError(
            f"{width}x{height} is {width * height:,} pixels; {limits.scope} allows at most {limits.max_pixels:,}"
            f"{limits.setting('EASEL_MAX_PIXELS')} (e.g. {_fit_hint(width, height, limits.max_pixels)})."
        )
    batch = value("batch_size", 1)
    # The model's default schedule goes with its default sampler; a sampler the request names takes its own.
    schedule_default = d.schedule if "sampler" not in given else None
    asked_schedule = value("schedule", None) if "schedule" in given else schedule_default
    sampler_spec, schedule = resolve_sampler(value("sampler", d.sampler), asked_schedule)
    strength = value("subseed_strength", 0.0)
    clip_skip = value("clip_skip", d.clip_skip)

    init_image = value("init_image", None) if "init_image" in given else None
    if init_image is not None and enable_hr:
        raise InvalidParamsError("Hires fix is for text-to-image; with an init image, set the size directly.")
    mask = value("mask", None) if "mask" in given else None
    if mask is not None and init_image is None:
        raise InvalidParamsError("A mask goes with an init image: it says which part of that image to redraw.")
    inpaint = _inpaint_options(given, limits) if mask is not None else {}
    denoise_default = 0.75 if init_image is not None else 0.7 if enable_hr else None
    denoise = value("denoising_strength", denoise_default) if "denoising_strength" in given else denoise_default
    if init_image is None and not enable_hr:
        denoise = None  # A1111 ignores it for plain txt2img; it has nothing to act on

    hr_scale = value("hr_scale", 2.0)
    hr_x, hr_y = value("hr_resize_x", 0), value("hr_resize_y", 0)
    hr_steps = value("hr_steps", 0)
    hr_upscaler = value("hr_upscaler", "Latent")
    hr_sampler, hr_schedule = _hires_sampler(
        given.get("hr_sampler"), given.get("hr_schedule"), sampler_spec.name, schedule
    )
    hr_cfg = value("hr_cfg_scale", None) if "hr_cfg_scale" in given else None
    hr_distilled = value("hr_distilled_cfg_scale", None) if "hr_distilled_cfg_scale" in given else None
    if not enable_hr:
        hr_sampler = hr_schedule = hr_cfg = hr_distilled = None
    if enable_hr:
        final_w, final_h = hires_size(width, height, hr_scale, hr_x, hr_y)
        if final_w * final_h > limits.max_hires_pixels or max(final_w, final_h) > limits.max_hires_side:
            raise HiresTooLargeError(
                f"Hires fix would make {final_w}x{final_h} ({final_w * final_h:,} pixels); {limits.scope} allows at "
                f"most {limits.max_hires_pixels:,}{limits.setting('EASEL_MAX_HIRES_PIXELS')} and "
                f"{limits.max_hires_side:,} per side after hires fix: lower the size or the hires upscale."
            )

    rng_source = value("rng", limits.default_rng)
    ensd = value("ensd", 0)
    resize_w, resize_h = value("seed_resize_from_w", 0), value("seed_resize_from_h", 0)
    if resize_w * resize_h > limits.max_pixels:
        raise InvalidParamsError(f"Seed resize from must be a size within {limits.scope}'s limits.")

    vae = _vae_choice(given.get("vae"), d.vae)
    seed = resolve_seed(given.get("seed"), rng)
    subseed = resolve_seed(given.get("subseed"), rng) if strength > 0 else 0
    return GenerationParams(
        prompt=prompt,
        negative_prompt=negative,
        model=model,
        seed=seed,
        steps=steps,
        sampler=sampler_spec.name,
        schedule=schedule,
        cfg_scale=cfg,
        distilled_cfg_scale=distilled_cfg,
        width=width,
        height=height,
        batch_size=batch,
        subseed=subseed,
        subseed_strength=strength,
        clip_skip=clip_skip,
        init_image=init_image,
        denoising_strength=denoise,
        enable_hr=enable_hr,
        hr_scale=hr_scale,
        hr_resize_x=hr_x,
        hr_resize_y=hr_y,
        hr_upscaler=hr_upscaler,
        hr_steps=hr_steps,
        hr_sampler=hr_sampler,
        hr_schedule=hr_schedule,
        hr_cfg_scale=hr_cfg,
        hr_distilled_cfg_scale=hr_distilled,
        seed_resize_from_w=resize_w,
        seed_resize_from_h=resize_h,
        rng=rng_source,
        ensd=ensd,
        vae=vae,
        mask=mask,
        initial_noise_multiplier=value("initial_noise_multiplier", 1.0) if init_image is not None else 1.0,
        tiling=value("tiling", False),
        detailers=value("detailers", ()),
        **inpaint,
    )


def _inpaint_options(given: Mapping[str, Any], limits: Limits) -> dict[str, Any]:
    """The mask settings as given, each read and checked, else A1111's UI defaults."""
    defaults = {
        "mask_blur": 4, "inpainting_mask_invert": False, "inpainting_fill": "original", "inpaint_full_res": False,
        "inpaint_full_res_padding": 32,
    }  # fmt: skip
    return {
        key: check_option(key, given[key], limits) if key in given else default for key, default in defaults.items()
    }


EXTRAS_SCALE = (1.0, 8.0)  # Extras' "Scale by" slider


def extras_params(
    *,
    init_image: str,
    source_size: tuple[int, int],
    upscaler: str,
    model: str,
    limits: Limits,
    scale: Any = None,
    size: tuple[Any, Any] | None = None,
) -> GenerationParams:
    """An Extras upscale: by `scale`, or to `size` (Scale to, crop off; the output keeps the image's aspect, at
    least the size asked for). InvalidParamsError for a scale out of range or an output over the hires ceiling."""
    width, height = source_size
    if size is not None and any(side not in (None, "", 0) for side in size):
        target_w, target_h = (_as_int(label, side) for label, side in zip(("Width", "Height"), size, strict=True))
        if target_w < 8 or target_h < 8:
            raise InvalidParamsError("The width and height to upscale to must both be given, each at least 8.")
        params = GenerationParams(
            prompt="", model=model, seed=0, width=width, height=height, init_image=init_image,
            extras_upscaler=upscaler, upscale_to=f"{target_w}x{target_h}",
        )  # fmt: skip
    else:
        factor = _as_float("Upscale by", 4.0 if scale is None or scale == "" else scale)
        _check_range("Upscale by", factor, *EXTRAS_SCALE)
        params = GenerationParams(
            prompt="", model=model, seed=0, width=width, height=height, init_image=init_image,
            extras_upscaler=upscaler, upscale_by=factor,
        )  # fmt: skip
    check_extras(params, limits)
    return params


def describe_params(
    *, init_image: str, source_size: tuple[int, int], tagger: str, model: str, threshold: Any = None
) -> GenerationParams:
    """A `/describe` job: the image through the tagger, at its own thresholds or a general threshold given."""
    general = 0.0 if threshold is None or threshold == "" else _as_float("Threshold", threshold)
    params = GenerationParams(
        prompt="", model=model, seed=0, width=source_size[0], height=source_size[1], init_image=init_image,
        tagger=tagger, tag_threshold=general,
    )  # fmt: skip
    check_describe(params)
    return params


def check_describe(params: GenerationParams) -> None:
    if params.init_image is None or params.width < 1 or params.height < 1:
        raise InvalidParamsError("/describe needs an image.")
    for label, value in (("Threshold", params.tag_threshold), ("Character threshold", params.character_threshold)):
        if not 0.0 <= value < 1.0 or not math.isfinite(value):
            raise InvalidParamsError(f"{label} must be between 0 and 1 (0: the tagger's own), not {value:g}.")


def check_extras(params: GenerationParams, limits: Limits) -> None:
    """An Extras job's sizes: a real source, a sane factor, and an output within the hires ceiling."""
    upscaler = params.extras_upscaler or ""
    if upscaler not in ("None", "Lanczos", "Nearest") and not is_model_upscaler_name(upscaler):
        raise InvalidParamsError(f"Upscaler {shown(upscaler)} is not an upscaler name.")
    if params.init_image is None or params.width < 1 or params.height < 1:
        raise InvalidParamsError("An upscale needs an image.")
    scale = params.extras_scale()
    if not EXTRAS_SCALE[0] <= scale <= EXTRAS_SCALE[1] or not math.isfinite(scale):
        raise InvalidParamsError(
            f"An upscale can be by {EXTRAS_SCALE[0]:g} to {EXTRAS_SCALE[1]:g} times, not {scale:g}."
        )
    out_w, out_h = params.extras_size()
    if out_w < 8 or out_h < 8:
        raise InvalidParamsError(f"Upscaling {params.width}x{params.height} by {scale:g} gives no image.")
    if out_w * out_h > limits.max_hires_pixels or max(out_w, out_h) > limits.max_hires_side:
        raise HiresTooLargeError(
            f"Upscaling {params.width}x{params.height} by {scale:g} would make {out_w}x{out_h} ({out_w * out_h:,} "
            f"pixels); {limits.scope} allows at most {limits.max_hires_pixels:,}"
            f"{limits.setting('EASEL_MAX_HIRES_PIXELS')} and {limits.max_hires_side:,} per side: upscale by less."
        )


def _vae_choice(value: Any, default: str | None) -> str | None:
    """A1111's VAE setting: `Automatic` is the model's default (the owner's choice, else the checkpoint's own VAE),
    `None` the checkpoint's own; anything else names a file (checked by the caller against the VAE folder)."""
    if value is None or str(value).strip().lower() == "automatic":
        return default
    if str(value).strip().lower() == "none":
        return None
    name = str(value).strip()
    if len(name) > 200 or "/" in name or "\\" in name or name.startswith("."):
        raise InvalidParamsError(f"VAE {name[:60]!r} is not a VAE name.")
    return name


def hires_size(width: int, height: int, scale: float, resize_x: int, resize_y: int) -> tuple[int, int]:
    """A1111's `calculate_target_resolution`: the hires pass size (before any crop to the asked aspect)."""
    if resize_x == 0 and resize_y == 0:
        return int(width * scale), int(height * scale)
    if resize_y == 0:
        return resize_x, resize_x * height // width
    if resize_x == 0:
        return resize_y * width // height, resize_y
    if width / height < resize_x / resize_y:
        return resize_x, resize_x * height // width
    return resize_y * width // height, resize_y


def _fit_hint(width: int, height: int, max_pixels: int) -> str:
    scale = (max_pixels / (width * height)) ** 0.5
    return f"{int(width * scale) // 8 * 8}x{int(height * scale) // 8 * 8}"


USE_SAME_SAMPLER, USE_SAME_SCHEDULER = "Use same sampler", "Use same scheduler"


def _hires_sampler(
    sampler: object, schedule: object, main_sampler: str, main_schedule: str
) -> tuple[str | None, str | None]:
    """The hires pass's sampler and schedule type, canonical, each None where it is the job's own (A1111's
    "Use same sampler" / "Use same scheduler"). A combined name (`Euler a Karras`) carries its schedule."""
    same_sampler = sampler is None or str(sampler).strip().lower() == USE_SAME_SAMPLER.lower()
    same_schedule = schedule is None or str(schedule).strip().lower() == USE_SAME_SCHEDULER.lower()
    if same_sampler and same_schedule:
        return None, None
    try:
        spec, label = resolve_sampler(
            main_sampler if same_sampler else str(sampler), main_schedule if same_schedule else str(schedule)
        )
    except InvalidParamsError as err:
        raise InvalidParamsError(f"Hires sampler: {err}") from None
    return None if spec.name == main_sampler else spec.name, None if label == main_schedule else label
