"""Parameter text ("infotext") <-> params, written and read exactly as A1111 v1.10.1 does.

`create_infotext` writes what A1111's `processing.create_infotext` writes; `parse_infotext` is
`infotext_utils.parse_generation_parameters`; `options_from_infotext` is the paste step: parsed fields become
the raw options of `engine.params.build_params`, with a note for every field Easel does not honour.

`parameter_line` is the one writer of A1111's parameter line: the images' parameter text and the Edit form use it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from packaging.version import InvalidVersion, Version

from engine.detailer import is_detailer_key, tabs_from_fields
from engine.errors import InvalidParamsError
from engine.params import USE_SAME_SAMPLER, USE_SAME_SCHEDULER, GenerationParams
from engine.prompts.attention import parse_prompt_attention
from engine.samplers import effective_schedule, resolve_sampler, sampler_spec

# A1111's `re_param`; `find_params` finds what its findall finds, in linear time.
RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_RE_IMAGESIZE = re.compile(r"^(\d+)x(\d+)$")
_RE_VERSION_HEAD = re.compile(r"([^-]+-[^-]+)-.*")

# The fixed slots of create_infotext, in order. An `extra` entry with one of these keys lands in its slot, as
# A1111's `**p.extra_generation_params` does for e.g. "Denoising strength".
_FIXED_SLOTS = (
    "Steps", "Sampler", "Schedule type", "CFG scale", "Distilled CFG Scale", "Image CFG scale", "Seed",
    "Face restoration",
    "Size", "Model hash", "Model", "FP8 weight", "Cache FP16 weight for LoRA", "VAE hash", "VAE",
    "Variation seed", "Variation seed strength", "Seed resize from", "Denoising strength",
    "Conditional mask weight", "Clip skip", "ENSD", "Token merging ratio", "Token merging ratio hr",
    "Init image hash", "RNG", "Tiling",
)  # fmt: skip

# Added by parse_generation_parameters when missing: typed values, not strings (Clip skip is the string "1").
_DEFAULTS: dict[str, Any] = {
    "Clip skip": "1",
    "Hires resize-1": 0,
    "Hires resize-2": 0,
    "Hires sampler": "Use same sampler",
    "Hires schedule type": "Use same scheduler",
    "Hires checkpoint": "Use same checkpoint",
    "Hires prompt": "",
    "Hires negative prompt": "",
    "Mask mode": "Inpaint masked",
    "Masked content": "original",
    "Inpaint area": "Whole picture",
    "Masked area padding": 32,
    "RNG": "GPU",
    "Schedule type": "Automatic",
    "Schedule max sigma": 0,
    "Schedule min sigma": 0,
    "Schedule rho": 0,
    "VAE Encoder": "Full",
    "VAE Decoder": "Full",
    "FP8 weight": "Disable",
    "Cache FP16 weight for LoRA": False,
    "Refiner switch by sampling steps": False,
}

_V160 = Version("1.6.0")
_V170_TSNR = Version("v1.7.0-225")
_V180 = Version("1.8.0")


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"  # what the regex `\w` matches in text


def find_params(line: str) -> list[tuple[str, str]]:
    """`RE_PARAM.findall(line)`, without the regex engine's quadratic retries on long runs of key characters.

    At a start: whitespace, then a key (a word character, then word characters, spaces, `-` and `/`), which must be
    two characters or more and end at a `:`; then whitespace and a value: a double-quoted string (backslash escapes)
    followed by `,` or the end, else everything up to the next `,`. Where no key ends at a `:`, no start inside that
    run of key characters can either, so the scan jumps past it.
    """
    found: list[tuple[str, str]] = []
    n, i = len(line), 0
    while i < n:
        j = i
        while j < n and line[j].isspace():
            j += 1
        if j >= n or not _is_word(line[j]):
            i = j + 1
            continue
        k = j + 1
        while k < n and (_is_word(line[k]) or line[k] in " -/"):
            k += 1
        if k - j < 2 or k >= n or line[k] != ":":
            i = max(i + 1, k)
            continue
        v = k + 1
        while v < n and line[v].isspace():
            v += 1
        end = _quoted_end(line, v)
        if end is not None and (end == n or line[end] == ","):
            found.append((line[j:k], line[v:end]))
            i = end + 1
            continue
        comma = line.find(",", v)
        end = n if comma < 0 else comma
        found.append((line[j:k], line[v:end]))
        i = end + 1
    return found


def _quoted_end(line: str, start: int) -> int | None:
    """The index just past a `"(?:\\.|[^\\"])+"` at `start`, or None."""
    n = len(line)
    if start >= n or line[start] != '"':
        return None
    t, count = start + 1, 0
    while t < n:
        char = line[t]
        if char == "\\":
            if t + 1 >= n or line[t + 1] == "\n":
                return None  # `\\.` needs a character (any but a newline); nothing else takes a backslash
            t += 2
        elif char == '"':
            break
        else:
            t += 1
        count += 1
    if t >= n or count == 0:
        return None
    return t + 1


def quote(v: str) -> str:
    """A1111's quote: JSON-quote a value holding `,`, a newline or `:`; leave any other value as is."""
    if "," not in v and "\n" not in v and ":" not in v:
        return v
    return json.dumps(v, ensure_ascii=False)


def unquote(v: str) -> str:
    """A1111's unquote: a value in double quotes is JSON-decoded; if that fails the raw text is kept."""
    if len(v) == 0 or v[0] != '"' or v[-1] != '"':
        return v
    try:
        decoded = json.loads(v)
    except ValueError:
        return v
    return decoded if isinstance(decoded, str) else v


def ui_number(value: float) -> str:
    """A number as the web UI sends it: the browser's JSON turns 7.0 into 7 (`CFG scale: 7`); 7.5 stays."""
    if math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return repr(float(value))


VERSION = "Easel 0.1.0"
_AFTER_VERSION = ("Diffusion in Low Bits",)
_MODULE_KEY = re.compile(r"^Module \d+$")
_CIVITAI_CFG = re.compile(r"(^|, )CFG scale: ")


def parameter_line(
    params: GenerationParams,
    *,
    model_name: str,
    model_hash: str | None,
    image_index: int = 0,
    extra: Mapping[str, str | None] | None = None,
    version: str = VERSION,
) -> str:
    """A1111's parameter line (`Steps: 20, Sampler: ...`) of image `image_index` of a job, in its fixed order.

    `extra` holds what the job adds after the fixed fields (the plan's hires keys, RNG..., then Lora and TI hashes),
    in insertion order; a key that names a fixed slot (e.g. "Denoising strength") is written in that slot, as
    A1111's `**p.extra_generation_params` does. None values are left out.
    """
    variation = params.subseed_strength != 0
    fields: dict[str, str | None] = dict.fromkeys(_FIXED_SLOTS)
    fields.update(
        {
            "Steps": str(params.steps),
            "Sampler": params.sampler,
            "Schedule type": effective_schedule(sampler_spec(params.sampler), params.schedule),
            "CFG scale": ui_number(params.cfg_scale),
            "Seed": str(params.image_seeds()[image_index]),
            "Size": f"{params.width}x{params.height}",
            "Model hash": model_hash,
            "Model": model_name,
            "VAE": params.vae,  # A1111 writes the VAE file's name when one from the VAE folder is used
            "Variation seed": str(params.image_subseeds()[image_index]) if variation else None,
            "Variation seed strength": ui_number(params.subseed_strength) if variation else None,
            "Clip skip": str(params.clip_skip) if params.clip_skip > 1 else None,
        }
    )
    # Forge writes its low-bits choice and the separately loaded modules (Flux's ae, clip_l, t5xxl) after `Version`.
    after = {k: v for k, v in (extra or {}).items() if k in _AFTER_VERSION or _MODULE_KEY.match(k)}
    fields.update({k: v for k, v in (extra or {}).items() if k not in after})
    fields["Version"] = version
    fields.update(after)
    return ", ".join(k if k == v else f"{k}: {quote(v)}" for k, v in fields.items() if v is not None)


def create_infotext(
    params: GenerationParams,
    *,
    model_name: str,
    model_hash: str | None,
    image_index: int = 0,
    extra: Mapping[str, str | None] | None = None,
    version: str = VERSION,
) -> str:
    """The parameter text of image `image_index` of a job, as A1111's `processing.create_infotext` writes it: the
    prompt, the negative prompt, then `parameter_line`."""
    line = parameter_line(
        params, model_name=model_name, model_hash=model_hash, image_index=image_index, extra=extra, version=version
    )
    negative = f"\nNegative prompt: {params.negative_prompt}" if params.negative_prompt else ""
    return f"{params.prompt}{negative}\n{line}".strip()


def parse_infotext(text: str) -> dict[str, Any]:
    """A1111's parse_generation_parameters (with no styles defined and no fields skipped).

    Values read from the text are strings; `WxH` values become `key-1`/`key-2`; the defaults A1111 adds for
    missing keys keep their Python types (see `_DEFAULTS`).
    """
    res: dict[str, Any] = {}
    prompt = ""
    negative_prompt = ""
    done_with_prompt = False

    *lines, lastline = text.strip().split("\n")
    if len(find_params(lastline)) < 3:
        lines.append(lastline)
        lastline = ""

    for raw_line in lines:
        line = raw_line.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt = True
            line = line[16:].strip()
        if done_with_prompt:
            negative_prompt += ("" if negative_prompt == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line

    lastline = civitai_flux_fix(lastline)
    for key, raw in find_params(lastline):
        if not raw:
            continue  # A1111 fails on v[0], prints an error and drops the key
        value = unquote(raw)
        size = _RE_IMAGESIZE.match(value)
        if size is not None:
            res[f"{key}-1"] = size.group(1)
            res[f"{key}-2"] = size.group(2)
        else:
            res[key] = value

    res["Prompt"] = prompt
    res["Negative prompt"] = negative_prompt

    if "Clip skip" not in res:
        res["Clip skip"] = _DEFAULTS["Clip skip"]
    hypernet = res.get("Hypernet")
    if hypernet is not None:
        res["Prompt"] += f"<hypernet:{hypernet}:{res.get('Hypernet strength', '1.0')}>"
    if "Hires resize-1" not in res:
        res["Hires resize-1"] = 0
        res["Hires resize-2"] = 0
    for key in (
        "Hires sampler", "Hires schedule type", "Hires checkpoint", "Hires prompt", "Hires negative prompt",
        "Mask mode", "Masked content", "Inpaint area", "Masked area padding",
    ):  # fmt: skip
        res.setdefault(key, _DEFAULTS[key])

    _restore_old_hires_fix_params(res)

    for key in (
        "RNG", "Schedule type", "Schedule max sigma", "Schedule min sigma", "Schedule rho", "VAE Encoder",
        "VAE Decoder", "FP8 weight",
    ):  # fmt: skip
        res.setdefault(key, _DEFAULTS[key])
    if "Cache FP16 weight for LoRA" not in res and res["FP8 weight"] != "Disable":
        res["Cache FP16 weight for LoRA"] = False

    if "Emphasis" not in res and _uses_emphasis(prompt, negative_prompt):
        res["Emphasis"] = "Original"
    res.setdefault("Refiner switch by sampling steps", False)

    _backcompat(res)
    return res


def civitai_flux_fix(line: str) -> str:
    """Forge's repair of civitai's Flux parameter lines (`infotext_utils.parse_generation_parameters`), applied as
    literally as Forge does: only when the line names both `Civitai` and `FLUX`, a meaningless `Clip skip: 0..8, `
    is removed, `Sampler: Undefined, ` becomes Euler + Simple, and civitai's CFG scale is the distilled one. Unlike
    Forge, only the key `CFG scale` itself is rewritten: Forge's plain replacement also turns civitai's `Hires CFG
    scale: 3.5` into `Hires CFG scale: 1, Distilled CFG Scale: 3.5`, which overwrites the first pass's value."""
    if "Civitai" not in line or "FLUX" not in line:
        return line
    for skip in range(9):
        line = line.replace(f"Clip skip: {skip}, ", "")
    line = line.replace("Sampler: Undefined, ", "Sampler: Euler, Schedule type: Simple, ")
    return _CIVITAI_CFG.sub(r"\1CFG scale: 1, Distilled CFG Scale: ", line)


def _restore_old_hires_fix_params(res: dict[str, Any]) -> None:
    """Before 1.0, `Size` was the final size and `First pass size` the small one; convert to today's keys."""
    first_width, first_height = res.get("First pass size-1"), res.get("First pass size-2")
    if first_width is None or first_height is None:
        return
    first_width, first_height = _side("First pass size", first_width), _side("First pass size", first_height)
    width, height = _side("Size", res.get("Size-1", 512)), _side("Size", res.get("Size-2", 512))
    if first_width == 0 or first_height == 0:
        if width == 0 or height == 0:
            raise InvalidParamsError(f"Size {width}x{height} is not a size: give both sides, e.g. `Size: 512x768`.")
        # processing.old_hires_fix_first_pass_dimensions: about 512x512 pixels, sides rounded up to 64.
        scale = math.sqrt(512 * 512 / (width * height))
        first_width = math.ceil(scale * width / 64) * 64
        first_height = math.ceil(scale * height / 64) * 64
    res["Size-1"], res["Size-2"] = first_width, first_height
    res["Hires resize-1"], res["Hires resize-2"] = width, height


def _side(key: str, value: Any) -> int:
    """One side of a pasted `WxH` size, as a number of pixels a request could hold (not 4,000 digits)."""
    text = str(value).strip()
    if not text.isdigit() or len(text) > 6:
        raise InvalidParamsError(f"{key} must be a size such as `512x768`, not `{text[:20]}`.")
    return int(text)


def _uses_emphasis(prompt: str, negative_prompt: str) -> bool:
    try:
        pieces = parse_prompt_attention(prompt) + parse_prompt_attention(negative_prompt)
    except InvalidParamsError:
        return False  # A1111 crashes here (`(a:1.2.3)`); the prompt is refused later with a clear message
    return any(weight != 1.0 and piece != "BREAK" for piece, weight in pieces)


def _parse_version(text: Any) -> Version | None:
    """infotext_versions.parse_version: keep the first two `-` fields, then PEP 440 (Forge strings fail)."""
    if not isinstance(text, str):
        return None
    head = _RE_VERSION_HEAD.match(text)
    try:
        return Version(head.group(1) if head else text)
    except InvalidVersion:
        return None


def _backcompat(res: dict[str, Any]) -> None:
    """infotext_versions.backcompat: switch on the settings that images from older versions were made with."""
    version = _parse_version(res.get("Version"))
    if version is None:
        return
    if version < _V160 and "[" in res.get("Prompt", ""):
        res["Old prompt editing timelines"] = True
    if version < _V160 and res.get("Sampler", "") in ("DDIM", "PLMS"):
        res["Pad conds v0"] = True
    if version < _V170_TSNR:
        res["Downcast alphas_cumprod"] = True
    if version < _V180 and res.get("Refiner"):
        res["Refiner switch by sampling steps"] = True


def looks_like_infotext(text: str) -> bool:
    """True for a pasted parameter block: a last line of 3+ `key: value` pairs, among them Steps/Sampler/Seed."""
    lastline = text.strip().split("\n")[-1]
    pairs = find_params(lastline)
    return len(pairs) >= 3 and any(key in ("Steps", "Sampler", "Seed") for key, _ in pairs)


@dataclass(frozen=True)
class ModelHint:
    """The checkpoint an infotext names: `Model` (the file name without extension) and `Model hash`."""

    name: str | None
    hash: str | None


def model_from_infotext(fields: Mapping[str, Any]) -> ModelHint:
    """The model a parsed infotext asks for; the registry resolves it (hash first, as A1111 does) and says so
    to the user when it has no such model."""
    name, model_hash = fields.get("Model"), fields.get("Model hash")
    return ModelHint(
        name if isinstance(name, str) and name else None,
        model_hash if isinstance(model_hash, str) and model_hash else None,
    )


# Parsed key -> build_params option.
_OPTIONS = {
    "Prompt": "prompt",
    "Negative prompt": "negative_prompt",
    "Steps": "steps",
    "Sampler": "sampler",
    "Schedule type": "schedule",
    "CFG scale": "cfg_scale",
    "Distilled CFG Scale": "distilled_cfg_scale",
    "Seed": "seed",
    "Size-1": "width",
    "Size-2": "height",
    "Variation seed": "subseed",
    "Variation seed strength": "subseed_strength",
    "Clip skip": "clip_skip",
    "Seed resize from-1": "seed_resize_from_w",
    "Seed resize from-2": "seed_resize_from_h",
    "RNG": "rng",
    "ENSD": "ensd",
    "VAE": "vae",
    "Tiling": "tiling",
}

# Read only when hires fix is switched on (A1111 pastes them into the hires controls).
_HIRES_OPTIONS = {
    "Denoising strength": "denoising_strength",
    "Hires upscale": "hr_scale",
    "Hires resize-1": "hr_resize_x",
    "Hires resize-2": "hr_resize_y",
    "Hires steps": "hr_steps",
    "Hires upscaler": "hr_upscaler",
    "Hires CFG Scale": "hr_cfg_scale",  # Forge's
    "Hires Distilled CFG Scale": "hr_distilled_cfg_scale",
}

# An img2img block's inpainting fields, in A1111's words (build_params reads the words).
_INPAINT_OPTIONS = {
    "Mask blur": "mask_blur",
    "Mask mode": "inpainting_mask_invert",
    "Masked content": "inpainting_fill",
    "Inpaint area": "inpaint_full_res",
    "Masked area padding": "inpaint_full_res_padding",
    "Noise multiplier": "initial_noise_multiplier",
}

# With `Denoising strength`, any of these switches hires fix on when pasted (A1111's txt2img paste rule).
_HIRES_SWITCHES = ("Hires upscale", "Hires upscaler", "Hires resize-1")

# A hires-pass setting equal to its main-pass counterpart changes nothing (A1111 writes these only on a difference).
_HIRES_SAME_AS = {
    "Hires sampler": "Sampler",
    "Hires schedule type": "Schedule type",
    "Hires checkpoint": "Model",
    "Hires prompt": "Prompt",
    "Hires negative prompt": "Negative prompt",
}

# Keys that change nothing about the image, or that the parser already folded into other keys.
ZERO_TERMINAL_SNR = "Zero Terminal SNR"  # A1111 dev / Forge Classic's `Noise Schedule` for a ZTSNR checkpoint
_SILENT = {
    "Noise Schedule",  # a property of the checkpoint here: the resolver checks it against the model
    "Version", "User", "Model", "Model hash", "Lora hashes", "TI hashes", "Hashes", "VAE hash",
    "Civitai resources", "Civitai metadata", "Hypernet", "Hypernet strength", "Hypernet hash",
    "First pass size-1", "First pass size-2", "Refiner switch by sampling steps",
}  # fmt: skip

# What Easel does anyway, so saying so would be noise. (Easel keeps a Flux transformer in the file's own storage,
# Forge's "Automatic"; the LoRAs it applies are computed in the inference dtype, Forge's "(fp16 LoRA)".)
_HONOURED = {"Emphasis": "Original", "Diffusion in Low Bits": "Automatic (fp16 LoRA)"}


def options_from_infotext(
    fields: Mapping[str, Any], *, init_image: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Raw `build_params` options from parsed fields, and one readable note per field Easel does not honour.

    The model is not an option (build_params takes it resolved): read it with `model_from_infotext`. Combined
    sampler names (`DPM++ 2M Karras`) are passed on whole; resolve_sampler splits them. Values are passed as
    strings, so build_params' messages quote exactly what was pasted.

    This is the txt2img paste: as in A1111, `Denoising strength` together with any of `Hires upscale`,
    `Hires upscaler` or `Hires resize-1` switches hires fix on, and since the parser always adds `Hires resize-1`,
    any `Denoising strength` does. With an `init_image` (an img2img paste) the strength is the img2img strength
    instead and the hires keys are noted as ignored.
    """
    options = {option: fields[key] for key, option in _OPTIONS.items() if key in fields}
    used = set(_OPTIONS)
    notes: list[str] = []
    if init_image is not None:
        options["init_image"] = init_image
        if "Denoising strength" in fields:
            options["denoising_strength"] = fields["Denoising strength"]
            used.add("Denoising strength")
        # The mask itself comes with the request; its settings come with the block (used when there is a mask).
        options.update({option: fields[key] for key, option in _INPAINT_OPTIONS.items() if key in fields})
        used.update(_INPAINT_OPTIONS)
    elif "Denoising strength" in fields and any(k in fields for k in _HIRES_SWITCHES):
        options["enable_hr"] = True
        options.update({option: fields[key] for key, option in _HIRES_OPTIONS.items() if key in fields})
        used.update(_HIRES_OPTIONS)
        for key, main in (("Hires CFG Scale", "CFG scale"), ("Hires Distilled CFG Scale", "Distilled CFG Scale")):
            if key in fields and _same_number(fields[key], fields.get(main, "3.5" if main.startswith("D") else None)):
                del options[_HIRES_OPTIONS[key]]  # Forge writes them always; equal to the first pass's: the same
        hires_choice = _hires_sampler_choice(fields, notes)
        if hires_choice is not None:
            options.update(hires_choice)
            used.update(("Hires sampler", "Hires schedule type"))
        for key, main in _HIRES_SAME_AS.items():
            if key in fields and fields[key] == fields.get(main):
                used.add(key)
    tabs = tabs_from_fields(fields, notes)  # ADetailer's keys: its tabs (what cannot run is noted there)
    if tabs:
        options["detailers"] = tabs
    used.update(key for key in fields if is_detailer_key(key))
    for key, value in fields.items():
        if key in used or key in _SILENT or _HONOURED.get(key) == value or _MODULE_KEY.match(key):
            continue  # Flux's modules: Easel runs a model with the ae, clip_l and t5xxl files installed
        if key in _DEFAULTS and _DEFAULTS[key] == value:
            continue
        base = key[:-2]
        if key.endswith("-1") and f"{base}-2" in fields:  # a `WxH` value the parser split: one note
            notes.append(_note(base, f"{value}x{fields[base + '-2']}"))
        elif not (key.endswith("-2") and f"{base}-1" in fields):
            notes.append(_note(key, value))
    return options, notes


def _same_number(a: Any, b: Any) -> bool:
    try:
        return b is not None and float(a) == float(b)
    except (TypeError, ValueError):
        return False


def _hires_sampler_choice(fields: Mapping[str, Any], notes: list[str]) -> dict[str, str] | None:
    """`Hires sampler` and `Hires schedule type` as A1111's `get_hr_sampler_and_scheduler` reads them: "Use same"
    (or absent) takes the main field's text; the pair is resolved as `get_sampler_and_scheduler` does, a schedule
    that is the sampler's own default turning back into Automatic; a result equal to the main field's text reads as
    "Use same". So `Sampler: DPM++ 2M, Schedule type: Karras` with no hires fields reads as ("Use same sampler",
    "Automatic"), as in A1111. None when both are the same; a name Easel does not know is noted and the main one
    is used."""
    main_sampler, main_schedule = fields.get("Sampler"), fields.get("Schedule type")
    raw_sampler = str(fields.get("Hires sampler", USE_SAME_SAMPLER))
    raw_schedule = str(fields.get("Hires schedule type", USE_SAME_SCHEDULER))
    sampler = str(main_sampler) if raw_sampler == USE_SAME_SAMPLER else raw_sampler
    schedule = str(main_schedule) if raw_schedule == USE_SAME_SCHEDULER else raw_schedule
    try:
        spec, label = resolve_sampler(sampler, schedule)
    except InvalidParamsError:
        if raw_sampler == USE_SAME_SAMPLER and raw_schedule == USE_SAME_SCHEDULER:
            return None  # the main pair itself is unknown: build_params says so
        notes.append(f"Hires sampler: {_shown(sampler)} ({_shown(schedule)}) is not available here; used the main one")
        return {}
    if label == spec.automatic:  # A1111's convert_automatic: the sampler's own default schedule is "Automatic"
        label = "Automatic"
    choice = {}
    if spec.name != main_sampler:
        choice["hr_sampler"] = spec.name
    if label != main_schedule:
        choice["hr_schedule"] = label
    return choice or None


def _shown(value: Any) -> str:
    shown = str(value).replace("\n", " ")
    return shown[:57] + "..." if len(shown) > 60 else shown


def _note(key: str, value: Any) -> str:
    return f"{key}: {_shown(value)} is not supported yet and was ignored"


def extras_text(params: GenerationParams) -> str:
    """A1111's Extras fields, in its order: `Postprocess upscale by` (or `to`), then `Postprocess upscaler`."""
    fields = (
        [("Postprocess upscale to", params.upscale_to)]
        if params.upscale_to
        else [("Postprocess upscale by", f"{params.upscale_by:g}")]
    )
    fields.append(("Postprocess upscaler", str(params.extras_upscaler)))
    return ", ".join(f"{key}: {quote(value)}" for key, value in fields)
