"""Diffusers configs for known architectures, written locally so single-file checkpoints load with no hub access.

`from_single_file(path, config=<folder>, local_files_only=True)` needs a folder with the component configs and
tokenizer files but no weights; diffusers would otherwise fetch them from the hub.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from engine.models.tokenizer import write_clip_tokenizer

SD15_SCHEDULER: dict[str, Any] = {
    "_class_name": "PNDMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
}

SD15_UNET: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

SD15_VAE: dict[str, Any] = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

SD15_TEXT_ENCODER: dict[str, Any] = {
    "architectures": ["CLIPTextModel"],
    "model_type": "clip_text_model",
    "attention_dropout": 0.0,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 49407,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
    "vocab_size": 49408,
}

SD15_INDEX: dict[str, Any] = {
    "_class_name": "StableDiffusionPipeline",
    "feature_extractor": [None, None],
    "requires_safety_checker": False,
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


def write_config_folder(folder: Path, components: dict[str, dict[str, Any]], index: dict[str, Any]) -> Path:
    """Write a weight-less diffusers folder: model_index.json, each component's config, CLIP tokenizer."""
    for name, config in components.items():
        sub = folder / name
        sub.mkdir(parents=True, exist_ok=True)
        filename = "scheduler_config.json" if name == "scheduler" else "config.json"
        (sub / filename).write_text(json.dumps(config, indent=1), encoding="utf-8")
    write_clip_tokenizer(folder / "tokenizer")
    (folder / "model_index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    return folder


def sd15_config_folder(cache_dir: Path) -> Path:
    folder = cache_dir / "configs" / "sd15"
    if not (folder / "model_index.json").exists():
        write_config_folder(
            folder,
            {
                "unet": SD15_UNET,
                "vae": SD15_VAE,
                "text_encoder": SD15_TEXT_ENCODER,
                "scheduler": SD15_SCHEDULER,
            },
            SD15_INDEX,
        )
    return folder


# SDXL base 1.0 (stabilityai/stable-diffusion-xl-base-1.0), the configs every SDXL-architecture checkpoint shares.
SDXL_SCHEDULER: dict[str, Any] = {
    "_class_name": "EulerDiscreteScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}

SDXL_UNET: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "use_linear_projection": True,
}

SDXL_VAE: dict[str, Any] = {
    **SD15_VAE,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": True,  # SDXL's VAE overflows in fp16 (the engine decodes again in fp32 on NaN)
}

SDXL_TEXT_ENCODER: dict[str, Any] = {**SD15_TEXT_ENCODER}

SDXL_TEXT_ENCODER_2: dict[str, Any] = {
    "architectures": ["CLIPTextModelWithProjection"],
    "model_type": "clip_text_model",
    "attention_dropout": 0.0,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 0,
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 5120,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
    "vocab_size": 49408,
}

SDXL_INDEX: dict[str, Any] = {
    "_class_name": "StableDiffusionXLPipeline",
    "feature_extractor": [None, None],
    "force_zeros_for_empty_prompt": True,
    "image_encoder": [None, None],
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


def write_sdxl_config_folder(folder: Path, components: dict[str, dict[str, Any]]) -> Path:
    """An SDXL skeleton: as `write_config_folder`, plus the second tokenizer, which pads with `!` (id 0) as OpenCLIP
    does."""
    write_clip_tokenizer(folder / "tokenizer_2", pad_token="!")
    return write_config_folder(folder, components, SDXL_INDEX)  # model_index.json last: the folder is complete


def sdxl_config_folder(cache_dir: Path) -> Path:
    folder = cache_dir / "configs" / "sdxl"
    if not (folder / "model_index.json").exists():
        write_sdxl_config_folder(
            folder,
            {
                "unet": SDXL_UNET,
                "vae": SDXL_VAE,
                "text_encoder": SDXL_TEXT_ENCODER,
                "text_encoder_2": SDXL_TEXT_ENCODER_2,
                "scheduler": SDXL_SCHEDULER,
            },
        )
    return folder


def inpainting_configs(folder: Path, cache_dir: Path) -> Path:
    """A copy of a config folder whose UNet takes 9 input channels (the latents, the mask, the masked image's
    latents): what an inpainting checkpoint of that family loads with. Made once per folder."""
    import hashlib
    import shutil

    variant = cache_dir / "configs" / f"inpainting-{hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]}"
    done = variant / ".complete"
    if done.is_file():
        return variant
    partial = variant.with_name(f"{variant.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(folder, partial, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.ckpt"))
    unet_config = partial / "unet" / "config.json"
    config = json.loads(unet_config.read_text(encoding="utf-8"))
    config["in_channels"] = 9
    unet_config.write_text(json.dumps(config, indent=1), encoding="utf-8")
    (partial / ".complete").write_text("", encoding="utf-8")
    shutil.rmtree(variant, ignore_errors=True)
    partial.rename(variant)
    return variant
