"""What a single-file checkpoint is, read from its safetensors header alone (tensor names and shapes), by A1111's rules.

A1111 (`sd_models_config.py`, `sd_models.py`) tells the families by marker tensors: CLIP-L's token embedding (SD 1.x),
OpenCLIP's first resblock under `cond_stage_model.model` (SD 2.x), `conditioner.embedders.1.model.ln_final` (SDXL base)
or `conditioner.embedders.0.model.ln_final` (SDXL refiner); a 9-channel first UNet convolution is an inpainting model.
NoobAI-style v-prediction files carry the marker keys `v_pred` and `ztsnr` (read by ComfyUI, Forge and A1111's dev
branch). SD3 and Flux are told by their transformer blocks, as diffusers' `infer_diffusers_model_type` does. The file
name never decides anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EASEL_CONFIG_KEY = "easel.config"  # metadata naming the built-in config an exported checkpoint was made from

SD1_CLIP = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
SD2_CLIP = "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"
SDXL_CLIP_G = "conditioner.embedders.1.model.ln_final.weight"
SDXL_REFINER_CLIP_G = "conditioner.embedders.0.model.ln_final.weight"
UNET_CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
SD3_BLOCK = "joint_blocks.0.context_block.adaLN_modulation.1.bias"
FLUX_BLOCK = "double_blocks.0.img_attn.norm.key_norm.scale"

# The families Easel runs; every other one is listed as refused, named.
RUNNABLE = ("sd1", "sdxl", "flux")
FAMILY_NAMES = {
    "sd1": "SD 1.x",
    "sd1-inpaint": "SD 1.x inpainting",
    "sd2": "SD 2.x",
    "sdxl": "SDXL",
    "sdxl-inpaint": "SDXL inpainting",
    "sdxl-refiner": "SDXL refiner",
    "sd3": "SD 3/3.5",
    "flux": "Flux.1",
}
_WHY = {
    "sdxl-refiner": "a refiner only finishes another SDXL model's image, and Easel does not run refiners yet",
    "sd2": "Easel does not run SD 2.x yet",
    "sd3": "Easel does not run SD 3 yet",
}


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's family and sampling traits, or why Easel refuses it."""

    family: str
    prediction: str = "epsilon"  # or "v_prediction"
    ztsnr: bool = False  # trained with zero terminal SNR: sample on the rescaled schedule
    easel_config: str | None = None  # the built-in config an Easel export names
    refused: str | None = None
    inpainting: bool = False  # a 9-channel UNet: the mask and the masked image's latents join its input
    detail: str = ""  # what the model list says of it beyond its family (Flux: variant, blocks, storage, modules)

    @property
    def family_name(self) -> str:
        return FAMILY_NAMES.get(self.family, self.family)


def inspect_checkpoint(header: Mapping[str, Any]) -> Checkpoint:
    """The checkpoint a safetensors header describes; `refused` says why when Easel cannot run it."""
    metadata = header.get("__metadata__") or {}
    easel_config = metadata.get(EASEL_CONFIG_KEY) if isinstance(metadata, Mapping) else None
    keys = set(header) - {"__metadata__"}
    prediction = "v_prediction" if "v_pred" in keys else "epsilon"
    ztsnr = "ztsnr" in keys
    family = _family(header, keys)
    if family is None:
        if any(k.startswith("lora_") or ".lora_" in k for k in keys):
            return Checkpoint("lora", refused="this is a LoRA, not a checkpoint: put it in the Lora folder")
        if any(k.startswith(("encoder.", "decoder.", "first_stage_model.")) for k in keys) and not any(
            k.startswith("model.diffusion_model.") for k in keys
        ):
            return Checkpoint("vae", refused="this is a VAE, not a checkpoint: put it in the VAE folder")
        return Checkpoint("unknown", refused="not a Stable Diffusion checkpoint this version recognises")
    inpainting = family.endswith("-inpaint")
    family = family.removesuffix("-inpaint")  # an inpainting checkpoint is its family's, with a 9-channel UNet
    refused, detail = None, ""
    if family == "flux":
        detail = describe_flux(header)
        inpainting = detail.startswith("Flux.1 Fill")  # its image input also takes the masked image and the mask
    elif family not in RUNNABLE:
        refused = f"{FAMILY_NAMES[family]} checkpoint: {_WHY[family]}"
    config = str(easel_config) if easel_config else None
    return Checkpoint(family, prediction, ztsnr, config, refused, inpainting, detail)


_STORAGE = {"F8_E4M3": "fp8 (e4m3fn)", "F8_E5M2": "fp8 (e5m2)", "BF16": "bf16", "F16": "fp16", "F32": "fp32"}


def describe_flux(header: Mapping[str, Any]) -> str:
    """What a Flux.1 file is, from its tensors as Forge reads them: dev (it has the distilled-guidance embedder
    `guidance_in`) or schnell, Fill (a 384-wide image input), its block counts (pruned "lite" files have fewer), how
    its transformer is stored, and whether the VAE and text encoders are in the file or must be installed apart."""
    keys = set(header) - {"__metadata__"}
    prefix = "model.diffusion_model." if any(k.startswith("model.diffusion_model.double_blocks.") for k in keys) else ""
    inner = {k[len(prefix) :] for k in keys if k.startswith(prefix)}
    variant = "dev" if "guidance_in.in_layer.weight" in inner else "schnell"
    image_in = header.get(f"{prefix}img_in.weight")
    if isinstance(image_in, Mapping) and list(image_in.get("shape", []))[1:2] == [384]:
        variant = "Fill"
    double = {k.split(".")[1] for k in inner if k.startswith("double_blocks.")}
    single = {k.split(".")[1] for k in inner if k.startswith("single_blocks.")}
    weight = header.get(f"{prefix}double_blocks.0.img_attn.qkv.weight")
    dtype = weight.get("dtype") if isinstance(weight, Mapping) else None
    known = _STORAGE.get(str(dtype))
    storage = f"{known if known else 'GGUF ' + str(dtype)}, " if dtype else ""
    has_vae = any(k.startswith(("vae.", "first_stage_model.")) for k in keys)
    has_text = any(k.startswith(("text_encoders.", "conditioner.", "cond_stage_model.")) for k in keys)
    contents = (
        "with its VAE and text encoders"
        if has_vae and has_text
        else "transformer only: it runs with the installed ae, clip_l and t5xxl files"
    )
    return f"Flux.1 {variant} ({len(double)} double + {len(single)} single blocks, {storage}{contents})"


def _family(header: Mapping[str, Any], keys: set[str]) -> str | None:
    inpaint = _in_channels(header) == 9
    if SDXL_CLIP_G in keys:
        return "sdxl-inpaint" if inpaint else "sdxl"
    if SDXL_REFINER_CLIP_G in keys:
        return "sdxl-refiner"
    if SD2_CLIP in keys or any(k.startswith("cond_stage_model.model.") for k in keys):
        return "sd2"
    if SD1_CLIP in keys or (
        any(k.startswith("model.diffusion_model.") for k in keys)
        and any(k.startswith("cond_stage_model.transformer.") for k in keys)
    ):
        return "sd1-inpaint" if inpaint else "sd1"
    if any(k.endswith(SD3_BLOCK) for k in keys):
        return "sd3"
    if any(k.endswith(FLUX_BLOCK) for k in keys):
        return "flux"
    return None


def _in_channels(header: Mapping[str, Any]) -> int | None:
    entry = header.get(UNET_CONV_IN)
    if isinstance(entry, Mapping):
        shape = entry.get("shape")
        if isinstance(shape, list) and len(shape) == 4:
            return int(shape[1])
    return None
