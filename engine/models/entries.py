"""What one file or folder in the models folder is: a `ModelEntry` (family, sampling traits, the owner's per-model
settings, or why it is refused), read from headers and small JSON files only, never from weights.

The owner's settings for a model live beside it: `<name>.easel.json` next to a single file, `easel.json` inside a
diffusers folder. They set the model's defaults (size, steps, CFG, sampler, schedule, clip skip, VAE) and, for a
file that lacks the marker keys, its prediction type and zero-terminal-SNR schedule.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.flux.gguf_files import read_gguf_header
from engine.models.detect import FAMILY_NAMES, Checkpoint, inspect_checkpoint
from engine.models.single_file import read_header

CHECKPOINT_SUFFIXES = (".safetensors", ".gguf", ".ckpt", ".pt", ".pth", ".bin")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
PICKLE_REFUSAL = "pickle checkpoint (.ckpt/.pt can run code when loaded); convert it to .safetensors"
SIDECAR_SUFFIX = ".easel.json"
MAX_SIDECAR_BYTES = 64 * 1024
PIPELINE_FAMILIES = {
    "StableDiffusionPipeline": "sd1",
    "StableDiffusionImg2ImgPipeline": "sd1",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusionXLImg2ImgPipeline": "sdxl",
    "StableDiffusionInpaintPipeline": "sd1-inpaint",
    "StableDiffusionXLInpaintPipeline": "sdxl-inpaint",
    "StableDiffusion3Pipeline": "sd3",
    "FluxPipeline": "flux",
    "FluxFillPipeline": "flux-inpaint",
}
_CONTEXT_KEY = re.compile(r"^model\.diffusion_model\..*attn2\.to_k\.weight$")
_SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "width": (int,),
    "height": (int,),
    "steps": (int,),
    "cfg_scale": (int, float),
    "distilled_cfg_scale": (int, float),
    "sampler": (str,),
    "schedule": (str,),
    "clip_skip": (int,),
    "vae": (str,),
    "prediction": (str,),
    "ztsnr": (bool,),
}


class SidecarError(ValueError):
    """The owner's settings file for a model is malformed; the message says where and what."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str  # "builtin", "diffusers", "single-file", "hub", "remote" (on GPU workers elsewhere only)
    path: Path | None
    refused: str | None = None
    family: str = "sd1"  # see engine.models.detect.FAMILY_NAMES
    prediction: str = "epsilon"  # or "v_prediction"
    ztsnr: bool = False
    latent_scale: int = 8  # image pixels per latent pixel, from the VAE config (SD's VAE: 8)
    context_width: int | None = None  # what the UNet's cross-attention takes (SD 1.x 768, SDXL 2048)
    easel_config: str | None = None  # the built-in config an Easel export names
    settings: dict[str, Any] = field(default_factory=dict)  # the owner's per-model settings (sidecar)
    inpainting: bool = False  # a 9-channel inpainting UNet (SD 1.x or SDXL inpainting)
    detail: str = ""  # what the model list says beyond the family (a Flux file's variant, blocks and storage)

    @property
    def usable(self) -> bool:
        return self.refused is None

    @property
    def family_name(self) -> str:
        if self.detail:
            return self.detail
        name = FAMILY_NAMES.get(self.family, self.family)
        return f"{name} inpainting" if self.inpainting else name


def read_sidecar(path: Path) -> dict[str, Any]:
    """The owner's settings in `path` (empty when there is no such file); SidecarError when it is malformed."""
    if not path.is_file():
        return {}
    if path.stat().st_size > MAX_SIDECAR_BYTES:
        raise SidecarError(f"{path.name} is over {MAX_SIDECAR_BYTES // 1024} KiB")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise SidecarError(f"{path.name} is not readable JSON ({err})") from None
    if not isinstance(data, dict):
        raise SidecarError(f"{path.name} must hold a JSON object")
    for key, value in data.items():
        allowed = _SETTING_TYPES.get(key)
        if allowed is None:
            raise SidecarError(f"{path.name}: unknown setting {key!r} (known: {', '.join(_SETTING_TYPES)})")
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise SidecarError(f"{path.name}: {key} must be a {allowed[0].__name__}, not {value!r}")
    if data.get("prediction", "epsilon") not in ("epsilon", "v_prediction"):
        raise SidecarError(f"{path.name}: prediction must be epsilon or v_prediction")
    return data


def scan_path(path: Path, *, allow_ckpt: bool) -> ModelEntry | None:
    """The entry for one item of the models folder; None for what is not a model (the Lora folder, a text file)."""
    if path.name.startswith(".") or path.name.endswith(SIDECAR_SUFFIX):
        return None
    if path.is_dir():
        return _scan_folder(path) if (path / "model_index.json").is_file() else None
    suffix = path.suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        return None
    name = path.stem
    if suffix in PICKLE_SUFFIXES:
        # A pickle's keys cannot be read without unpickling it: an allowed .ckpt is taken to be SD 1.x.
        refused = None if (allow_ckpt and suffix == ".ckpt") else PICKLE_REFUSAL
        return ModelEntry(name, "single-file", path, refused=refused)
    try:
        header = read_gguf_header(path) if suffix == ".gguf" else read_header(path)
    except (OSError, ValueError) as err:
        return ModelEntry(name, "single-file", path, refused=str(err), family="unknown")
    return single_file_entry(name, path, inspect_checkpoint(header), header, path.with_name(name + SIDECAR_SUFFIX))


def single_file_entry(
    name: str, path: Path, checkpoint: Checkpoint, header: dict[str, Any], sidecar: Path
) -> ModelEntry:
    context = next((int(v["shape"][1]) for k, v in header.items() if _CONTEXT_KEY.match(k)), None)
    entry = ModelEntry(
        name,
        "single-file",
        path,
        refused=checkpoint.refused,
        family=checkpoint.family,
        prediction=checkpoint.prediction,
        ztsnr=checkpoint.ztsnr,
        context_width=context,
        easel_config=checkpoint.easel_config,
        inpainting=checkpoint.inpainting,
        detail=checkpoint.detail,
    )
    return with_settings(entry, sidecar)


def with_settings(entry: ModelEntry, sidecar: Path) -> ModelEntry:
    """The entry with the owner's settings applied (a malformed settings file refuses the model, saying why)."""
    try:
        settings = read_sidecar(sidecar)
    except SidecarError as err:
        return dataclasses.replace(entry, refused=f"its settings file is malformed: {err}")
    return dataclasses.replace(
        entry,
        settings=settings,
        prediction=settings.get("prediction", entry.prediction),
        ztsnr=settings.get("ztsnr", entry.ztsnr),
    )


def _scan_folder(path: Path) -> ModelEntry:
    try:
        pipeline_class = str(json.loads((path / "model_index.json").read_text(encoding="utf-8")).get("_class_name"))
    except (OSError, ValueError):
        return ModelEntry(path.name, "diffusers", path, refused="model_index.json is unreadable", family="unknown")
    family = PIPELINE_FAMILIES.get(pipeline_class)
    inpainting = family is not None and family.endswith("-inpaint")
    family = family.removesuffix("-inpaint") if family is not None else None
    if family is None:
        return ModelEntry(
            path.name, "diffusers", path, refused=f"{pipeline_class} models are not supported", family="unknown"
        )
    refused = None if family in ("sd1", "sdxl", "flux") else f"{FAMILY_NAMES[family]} models are not supported yet"
    if family == "sdxl" and not (path / "text_encoder" / "config.json").is_file():
        family, refused = "sdxl-refiner", "an SDXL refiner only finishes another model's image; Easel runs none yet"
    scheduler = _json(path / "scheduler" / "scheduler_config.json")
    entry = ModelEntry(
        path.name,
        "diffusers",
        path,
        refused=refused,
        family=family,
        prediction=str(scheduler.get("prediction_type", "epsilon")),
        ztsnr=bool(scheduler.get("rescale_betas_zero_snr", False)),
        latent_scale=latent_scale_of(path),
        context_width=context_width_of(path),
        inpainting=inpainting,
    )
    return with_settings(entry, path / "easel.json")


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def context_width_of(folder: Path) -> int | None:
    """A diffusers folder's cross-attention width, from its UNet config."""
    return _int_or_none(_json(folder / "unet" / "config.json").get("cross_attention_dim"))


def latent_scale_of(folder: Path) -> int:
    """A diffusers folder's latent scale, from its VAE config: each VAE level after the first halves the size."""
    channels = _json(folder / "vae" / "config.json").get("block_out_channels")
    return int(2 ** (len(channels) - 1)) if isinstance(channels, list) and channels else 8
