"""Built-in models: `builtin:tiny` (SD 1.x architecture, tiny configs, seeded random weights, built offline in
seconds), `builtin:tiny-xl` (the same for SDXL, kept as an A1111-layout single file so the single-file path is the
one it runs) and `builtin:shapes` (a tiny model trained to draw coloured shapes, shipped in the repo)."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.models.configs import (
    SD15_INDEX,
    SD15_SCHEDULER,
    SDXL_SCHEDULER,
    write_config_folder,
    write_sdxl_config_folder,
)

TINY_VERSION = "tiny-v1"
TINY_XL_VERSION = "tiny-xl-v1"
TINY_XL_FILE = "tiny-xl.safetensors"
SHAPES_DIR = Path(__file__).resolve().parent.parent / "data" / "builtin" / "shapes"
SHAPES_LORAS_DIR = SHAPES_DIR.parent / "shapes_loras"

TINY_UNET: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel",
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}

# Four levels like SD's VAE, so the latent is 1/8 of the image as with real checkpoints.
TINY_VAE: dict[str, Any] = {
    "_class_name": "AutoencoderKL",
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": [8, 16, 16, 16],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "sample_size": 64,
    "scaling_factor": 0.18215,
}

TINY_TEXT_ENCODER: dict[str, Any] = {
    "architectures": ["CLIPTextModel"],
    "model_type": "clip_text_model",
    "vocab_size": 49408,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "projection_dim": 32,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-05,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 49407,
}


def publish(folder: Path, done: str, write: Callable[[Path], object]) -> Path:
    """Write a built model (or config folder) into a folder of this process's own, then rename it into place: a crash
    mid-build never leaves half a model behind, and two processes building it at once (two workers sharing a data
    folder) never write into one folder; the first to finish wins and the other's copy is dropped. `done` is the
    file whose presence says the folder is whole."""
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        write(partial)
        if folder.exists() and not (folder / done).exists():
            shutil.rmtree(folder, ignore_errors=True)  # a folder an older version left incomplete
        try:
            partial.rename(folder)
        except OSError:
            if not (folder / done).exists():  # not another process's finished copy: a real failure
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def tiny_config_folder(cache_dir: Path) -> Path:
    """Weight-less config folder of builtin:tiny (used to load its single-file exports offline)."""
    folder = cache_dir / "configs" / TINY_VERSION
    if not (folder / "model_index.json").exists():
        components = {
            "unet": TINY_UNET,
            "vae": TINY_VAE,
            "text_encoder": TINY_TEXT_ENCODER,
            "scheduler": SD15_SCHEDULER,
        }
        publish(folder, "model_index.json", lambda partial: write_config_folder(partial, components, SD15_INDEX))
    return folder


def build_tiny(cache_dir: Path) -> Path:
    """Build builtin:tiny once into the cache (deterministic weights from fixed seeds) and return its folder."""
    folder = cache_dir / "builtin" / TINY_VERSION
    if (folder / "model_index.json").exists():
        return folder
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    configs = tiny_config_folder(cache_dir)

    def strip(config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in config.items() if not k.startswith("_") and k not in ("architectures", "model_type")}

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**strip(TINY_UNET))
    torch.manual_seed(1)
    vae = AutoencoderKL(**strip(TINY_VAE))
    torch.manual_seed(2)
    text_encoder = CLIPTextModel(CLIPTextConfig(**strip(TINY_TEXT_ENCODER)))
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(configs / "tokenizer"),
        unet=unet,
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return publish(folder, "model_index.json", lambda partial: pipe.save_pretrained(partial, safe_serialization=True))


# builtin:tiny-xl: the diffusers SDXL test components, except that the two text encoders differ in width (32 and 48,
# as real SDXL's 768 and 1280 do). With equal widths diffusers' single-file loader cannot tell them apart and fills
# text_encoder_2 from CLIP-L's weights. Cross-attention takes both: 32 + 48 = 80; the added embedding takes the
# pooled 48 plus six 8-wide size embeddings.
TINY_XL_UNET: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel",
    "sample_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [32, 64],
    "layers_per_block": 2,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "attention_head_dim": [2, 4],
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    "transformer_layers_per_block": [1, 2],
    "projection_class_embeddings_input_dim": 6 * 8 + 48,
    "cross_attention_dim": 32 + 48,
    "norm_num_groups": 8,
}
TINY_XL_VAE: dict[str, Any] = {**TINY_VAE, "scaling_factor": 0.13025, "force_upcast": True}
TINY_XL_TEXT_ENCODER: dict[str, Any] = {**TINY_TEXT_ENCODER, "num_hidden_layers": 3}
TINY_XL_TEXT_ENCODER_2: dict[str, Any] = {
    **TINY_TEXT_ENCODER,
    "architectures": ["CLIPTextModelWithProjection"],
    "hidden_size": 48,
    "intermediate_size": 96,
    "num_hidden_layers": 3,
    "projection_dim": 48,
    "hidden_act": "gelu",
    "pad_token_id": 0,
}


def tiny_xl_config_folder(cache_dir: Path) -> Path:
    """Weight-less config folder of builtin:tiny-xl (its single file loads offline with it)."""
    folder = cache_dir / "configs" / TINY_XL_VERSION
    if not (folder / "model_index.json").exists():
        components = {
            "unet": TINY_XL_UNET,
            "vae": TINY_XL_VAE,
            "text_encoder": TINY_XL_TEXT_ENCODER,
            "text_encoder_2": TINY_XL_TEXT_ENCODER_2,
            "scheduler": SDXL_SCHEDULER,
        }
        publish(folder, "model_index.json", lambda partial: write_sdxl_config_folder(partial, components))
    return folder


def build_tiny_xl(cache_dir: Path) -> Path:
    """Build builtin:tiny-xl once into the cache (a diffusers folder, and its export as an A1111-layout single file,
    `TINY_XL_FILE` inside it) from fixed seeds; returns the folder."""
    folder = cache_dir / "builtin" / TINY_XL_VERSION
    if (folder / TINY_XL_FILE).exists():
        return folder
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from engine.models.single_file import export_single_file

    configs = tiny_xl_config_folder(cache_dir)

    def strip(config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in config.items() if not k.startswith("_") and k not in ("architectures", "model_type")}

    torch.manual_seed(10)
    unet = UNet2DConditionModel(**strip(TINY_XL_UNET))
    torch.manual_seed(11)
    vae = AutoencoderKL(**strip(TINY_XL_VAE))
    torch.manual_seed(12)
    text_encoder = CLIPTextModel(CLIPTextConfig(**strip(TINY_XL_TEXT_ENCODER)))
    torch.manual_seed(13)
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**strip(TINY_XL_TEXT_ENCODER_2)))
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=CLIPTokenizer.from_pretrained(configs / "tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(configs / "tokenizer_2"),
        unet=unet,
        scheduler=EulerDiscreteScheduler.from_config(SDXL_SCHEDULER),
    )

    def write(partial: Path) -> None:
        pipe.save_pretrained(partial, safe_serialization=True)
        export_single_file(pipe, partial / TINY_XL_FILE, easel_config="builtin:tiny-xl")

    return publish(folder, TINY_XL_FILE, write)
