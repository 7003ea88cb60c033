"""ADetailer's detailer, in its words (Bing-su/adetailer v25.3.0): a tab's settings (`DetailerTab`), their parameter
text, read back from a paste, and the `[SEP]`/`[SKIP]`/`[PROMPT]` prompts. Pure and torch-free (the paste reader
loads it); the masks are `engine.detectors.masks`, the per-region inpaint `engine.plan.detail_params`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import InvalidParamsError

ADETAILER_VERSION = "25.3.0"  # the ADetailer whose behaviour and parameter text Easel follows
MAX_TABS = 4  # detectors in one job (ADetailer's UI shows 2 by default, up to 10)
MAX_REGIONS = 8  # regions detailed per tab and image; more are left as they are, with a note
MERGE_INVERT = ("None", "Merge", "Merge and Invert")
FILTER_METHODS = ("Area", "Confidence")
USE_SAME_SCHEDULER = "Use same scheduler"
# Detectors ADetailer runs that Easel does not (they need Google's mediapipe package).
MEDIAPIPE_PREFIX = "mediapipe"


@dataclass(frozen=True)
class DetailerTab:
    """One ADetailer tab (1st, 2nd...): the detector by name (a file's stem here) and ADetailer's settings, with its
    defaults. A "use separate" flag off means the job's own value is used."""

    model: str
    prompt: str = ""
    negative_prompt: str = ""
    confidence: float = 0.3
    mask_filter_method: str = "Area"
    mask_k: int = 0
    mask_min_ratio: float = 0.0
    mask_max_ratio: float = 1.0
    x_offset: int = 0
    y_offset: int = 0
    dilate_erode: int = 4
    mask_merge_invert: str = "None"
    mask_blur: int = 4
    denoising_strength: float = 0.4
    inpaint_only_masked: bool = True
    inpaint_padding: int = 32
    use_inpaint_width_height: bool = False
    inpaint_width: int = 512
    inpaint_height: int = 512
    use_steps: bool = False
    steps: int = 28
    use_cfg_scale: bool = False
    cfg_scale: float = 7.0
    use_checkpoint: bool = False
    checkpoint: str | None = None
    use_vae: bool = False
    vae: str | None = None
    use_sampler: bool = False
    sampler: str = "DPM++ 2M Karras"
    scheduler: str = USE_SAME_SCHEDULER
    use_noise_multiplier: bool = False
    noise_multiplier: float = 1.0
    use_clip_skip: bool = False
    clip_skip: int = 1

    def replace(self, **changes: Any) -> DetailerTab:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DetailerTab:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


# (attribute, ADetailer's key), in ADetailer's `_all_args` order: the order its parameter text is written in.
_KEYS = (
    ("model", "ADetailer model"),
    ("prompt", "ADetailer prompt"),
    ("negative_prompt", "ADetailer negative prompt"),
    ("confidence", "ADetailer confidence"),
    ("mask_filter_method", "ADetailer method to decide top k masks"),
    ("mask_k", "ADetailer mask only top k"),
    ("mask_min_ratio", "ADetailer mask min ratio"),
    ("mask_max_ratio", "ADetailer mask max ratio"),
    ("x_offset", "ADetailer x offset"),
    ("y_offset", "ADetailer y offset"),
    ("dilate_erode", "ADetailer dilate erode"),
    ("mask_merge_invert", "ADetailer mask merge invert"),
    ("mask_blur", "ADetailer mask blur"),
    ("denoising_strength", "ADetailer denoising strength"),
    ("inpaint_only_masked", "ADetailer inpaint only masked"),
    ("inpaint_padding", "ADetailer inpaint padding"),
    ("use_inpaint_width_height", "ADetailer use inpaint width height"),
    ("inpaint_width", "ADetailer inpaint width"),
    ("inpaint_height", "ADetailer inpaint height"),
    ("use_steps", "ADetailer use separate steps"),
    ("steps", "ADetailer steps"),
    ("use_cfg_scale", "ADetailer use separate CFG scale"),
    ("cfg_scale", "ADetailer CFG scale"),
    ("use_checkpoint", "ADetailer use separate checkpoint"),
    ("checkpoint", "ADetailer checkpoint"),
    ("use_vae", "ADetailer use separate VAE"),
    ("vae", "ADetailer VAE"),
    ("use_sampler", "ADetailer use separate sampler"),
    ("sampler", "ADetailer sampler"),
    ("scheduler", "ADetailer scheduler"),
    ("use_noise_multiplier", "ADetailer use separate noise multiplier"),
    ("noise_multiplier", "ADetailer noise multiplier"),
    ("use_clip_skip", "ADetailer use separate CLIP skip"),
    ("clip_skip", "ADetailer CLIP skip"),
)
_KEY_OF = dict(_KEYS)
# Keys ADetailer writes that Easel reads but cannot honour: noted when they ask for something.
_UNSUPPORTED = {
    "ADetailer model classes": "",
    "ADetailer restore face": "False",
    "ADetailer ControlNet model": "None",
    "ADetailer ControlNet module": "None",
    "ADetailer ControlNet weight": "1.0",
    "ADetailer ControlNet guidance start": "0.0",
    "ADetailer ControlNet guidance end": "1.0",
}
# A "use separate" flag and the values it switches on (ADetailer leaves both out when the flag is off).
_SWITCHES = {
    "use_inpaint_width_height": ("inpaint_width", "inpaint_height"),
    "use_steps": ("steps",),
    "use_cfg_scale": ("cfg_scale",),
    "use_checkpoint": ("checkpoint",),
    "use_vae": ("vae",),
    "use_sampler": ("sampler", "scheduler"),
    "use_noise_multiplier": ("noise_multiplier",),
    "use_clip_skip": ("clip_skip",),
}
_DEFAULTS = DetailerTab(model="")


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th... 11th, 12th, 13th, 21st."""
    ending = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{ending}"


def ordinal_suffix(index: int) -> str:
    """ADetailer's key suffix for tab `index` (0-based): nothing for the 1st, then ` 2nd`, ` 3rd`, ` 4th`..."""
    return "" if index == 0 else f" {ordinal(index + 1)}"


def adetailer_name(model: str) -> str:
    """The detector as ADetailer's parameter text names it: the `.pt` file it would load (`face_yolov8n.pt`), so the
    text pastes back into A1111 as well as into Easel."""
    return model if model.startswith(MEDIAPIPE_PREFIX) or model.endswith(".pt") else f"{model}.pt"


def _written(value: Any) -> str:
    """A value as A1111's create_infotext writes a Python value: `str()` (0.3, 7.0, 4, True)."""
    return str(value)


def tab_fields(tab: DetailerTab, index: int = 0) -> dict[str, str]:
    """One tab's parameter-text fields as ADetailer's `extra_params` writes them: defaults left out where it leaves
    them out, the switched values only with their switch, keys suffixed for the 2nd tab on."""
    values: dict[str, Any] = {attr: getattr(tab, attr) for attr, _ in _KEYS}
    values["model"] = adetailer_name(tab.model)
    drop: set[str] = set()
    for attr in ("prompt", "negative_prompt"):
        if not values[attr]:
            drop.add(attr)
    if tab.mask_k == 0:
        drop.update(("mask_k", "mask_filter_method"))
    for attr, default in (("mask_min_ratio", 0.0), ("mask_max_ratio", 1.0), ("x_offset", 0), ("y_offset", 0)):
        if values[attr] == default:
            drop.add(attr)
    if tab.mask_merge_invert == "None":
        drop.add("mask_merge_invert")
    if not tab.inpaint_only_masked:
        drop.add("inpaint_padding")
    for switch, switched in _SWITCHES.items():
        if not values[switch]:
            drop.update((switch, *switched))
    if tab.scheduler == USE_SAME_SCHEDULER:
        drop.add("scheduler")
    suffix = ordinal_suffix(index)
    return {_KEY_OF[attr] + suffix: _written(value) for attr, value in values.items() if attr not in drop}


def detailer_fields(tabs: Sequence[DetailerTab]) -> dict[str, str]:
    """Every tab's fields, then `ADetailer version` once, as ADetailer adds them to the job's parameter text."""
    if not tabs:
        return {}
    fields: dict[str, str] = {}
    for index, tab in enumerate(tabs):
        fields.update(tab_fields(tab, index))
    fields["ADetailer version"] = ADETAILER_VERSION
    return fields


# -- reading a paste ------------------------------------------------------------------------------------------


def is_detailer_key(key: str) -> bool:
    return key.startswith("ADetailer ")


def _as_bool(value: Any) -> bool:
    return str(value).strip().lower() == "true"


def _typed(attr: str, value: Any) -> Any:
    """A pasted value as the attribute's type (ADetailer's pydantic does the same); ValueError when it is not one."""
    default = getattr(_DEFAULTS, attr)
    if isinstance(default, bool):
        return _as_bool(value)
    if isinstance(default, int):
        return int(float(str(value)))
    if isinstance(default, float):
        number = float(str(value))
        if not math.isfinite(number):
            raise ValueError(value)
        return number
    text = str(value)
    return None if default is None and text in ("", "None") else text


def tabs_from_fields(fields: Mapping[str, Any], notes: list[str]) -> tuple[DetailerTab, ...]:
    """The tabs a parsed block's `ADetailer ...` keys describe, in order (1st, 2nd...): a key missing takes
    ADetailer's default. Keys Easel cannot honour (ControlNet, face restoration, YOLO-World classes) and mediapipe
    detectors are noted; an unreadable value is noted and takes the default."""
    tabs: list[DetailerTab] = []
    for index in range(10):  # ADetailer's most tabs
        suffix = ordinal_suffix(index)
        model = fields.get("ADetailer model" + suffix)
        if model is None:
            if index > 0:
                break
            continue
        values: dict[str, Any] = {}
        for attr, key in _KEYS[1:]:
            if key + suffix not in fields:
                continue
            try:
                values[attr] = _typed(attr, fields[key + suffix])
            except ValueError:
                notes.append(f"{key + suffix}: {str(fields[key + suffix])[:40]} is not a valid value; used "
                             f"ADetailer's default")  # fmt: skip
        for key, default in _UNSUPPORTED.items():
            value = fields.get(key + suffix)
            if value is not None and str(value) != default:
                notes.append(f"{key + suffix}: {str(value)[:40]} is not supported yet and was ignored")
        name = str(model).strip()
        if name in ("", "None"):
            continue
        if name.startswith(MEDIAPIPE_PREFIX):
            notes.append(f"ADetailer model{suffix}: {name} runs on Google's mediapipe, which Easel does not have; "
                         "that detailer was not run (a YOLO face detector does the same job)")  # fmt: skip
            continue
        tabs.append(DetailerTab(model=name, **values))
    return tuple(tabs)


def detector_stem(name: str) -> str:
    """The file stem a detector name asks for: `face_yolov8n.pt` and `face_yolov8n.safetensors` find `face_yolov8n`."""
    stem = name.strip()
    for ending in (".pt", ".pth", ".safetensors", ".onnx"):
        if stem.lower().endswith(ending):
            return stem[: -len(ending)]
    return stem


def check_tab(tab: DetailerTab, max_steps: int, max_side: int) -> None:
    """InvalidParamsError, naming ADetailer's key, for a value out of ADetailer's ranges (or Easel's limits)."""

    def between(attr: str, low: float, high: float) -> None:
        value = getattr(tab, attr)
        if not low <= value <= high:
            raise InvalidParamsError(f"{_KEY_OF[attr]} must be between {low:g} and {high:g}, not {value}.")

    for attr in ("confidence", "mask_min_ratio", "mask_max_ratio", "denoising_strength"):
        between(attr, 0.0, 1.0)
    between("mask_k", 0, 100)
    between("mask_blur", 0, 64)
    between("inpaint_padding", 0, 256)
    between("dilate_erode", -128, 128)
    between("x_offset", -max_side, max_side)
    between("y_offset", -max_side, max_side)
    between("steps", 1, max_steps)
    between("cfg_scale", 0.0, 30.0)
    between("noise_multiplier", 0.5, 1.5)
    between("clip_skip", 1, 12)
    if tab.use_inpaint_width_height:
        for attr in ("inpaint_width", "inpaint_height"):
            between(attr, 64, max_side)
            if getattr(tab, attr) % 8:
                raise InvalidParamsError(f"{_KEY_OF[attr]} must be a multiple of 8, not {getattr(tab, attr)}.")
    if tab.mask_merge_invert not in MERGE_INVERT:
        raise InvalidParamsError(f"ADetailer mask merge invert must be one of {', '.join(MERGE_INVERT)}.")
    if tab.mask_filter_method not in FILTER_METHODS:
        raise InvalidParamsError("ADetailer method to decide top k masks must be Area or Confidence.")


# -- prompts and seeds ----------------------------------------------------------------------------------------


def tab_prompts(text: str, image_prompt: str) -> list[str]:
    """ADetailer's `_get_prompt`: the tab's prompt split on `[SEP]`; an empty part is the image's own prompt, and
    `[PROMPT]` in a part is replaced by it."""
    parts = re.split(r"\s*\[SEP\]\s*", text)
    return [image_prompt if not part else part.replace("[PROMPT]", image_prompt) for part in parts]


def region_prompt(prompts: Sequence[str], index: int) -> str:
    """The part mask `index` uses: its own, or the last part for masks beyond them."""
    return prompts[min(index, len(prompts) - 1)]


def is_skip(prompt: str) -> bool:
    """A part that is just `[SKIP]` leaves its mask as it is."""
    return re.match(r"^\s*\[SKIP\]\s*$", prompt) is not None
