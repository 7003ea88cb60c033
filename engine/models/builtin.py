"""Built-in models: `builtin:tiny` (SD 1.x architecture, tiny configs, seeded random weights, built offline in
seconds) and `builtin:shapes` (a tiny model trained to draw coloured shapes, shipped in the repo)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from engine.models.configs import SD15_INDEX, SD15_SCHEDULER, write_config_folder

TINY_VERSION = "tiny-v1"
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


def tiny_config_folder(cache_dir: Path) -> Path:
    """Weight-less config folder of builtin:tiny (used to load its single-file exports offline)."""
    folder = cache_dir / "configs" / TINY_VERSION
    if not (folder / "model_index.json").exists():
        write_config_folder(
            folder,
            {
                "unet": TINY_UNET,
                "vae": TINY_VAE,
                "text_encoder": TINY_TEXT_ENCODER,
                "scheduler": SD15_SCHEDULER,
            },
            SD15_INDEX,
        )
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
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    pipe.save_pretrained(partial, safe_serialization=True)
    partial.rename(folder)  # atomic: a crash mid-build never leaves a half-written model behind
    return folder
