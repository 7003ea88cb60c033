"""`builtin:tiny-flux`: Flux.1 dev's architecture with tiny widths and seeded random weights, written as the files an
owner installs: a transformer-only BFL-layout file (with the `model.diffusion_model.` prefix) and separate `ae`,
`clip_l` and `t5xxl` files, so the tests run the same single-file path as a civitai download."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_FLUX_VERSION = "tiny-flux-v1"
TINY_FLUX_FILE = "tiny-flux.safetensors"
MODULE_FILES = {"ae": "ae.safetensors", "clip_l": "clip_l.safetensors", "t5xxl": "t5xxl_fp16.safetensors"}

TINY_TRANSFORMER: dict[str, Any] = {
    "patch_size": 1,
    "in_channels": 64,
    "num_layers": 1,
    "num_single_layers": 2,
    "attention_head_dim": 32,
    "num_attention_heads": 2,
    "joint_attention_dim": 32,
    "pooled_projection_dim": 32,
    "guidance_embeds": True,
    "axes_dims_rope": [4, 14, 14],
}
TINY_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 16,
    "block_out_channels": [32, 32, 32, 32],
    "layers_per_block": 1,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "norm_num_groups": 32,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
}
TINY_CLIP: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "projection_dim": 32,
    "hidden_act": "quick_gelu",
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}
TINY_T5: dict[str, Any] = {
    "vocab_size": 32128,
    "d_model": 32,
    "d_kv": 8,
    "d_ff": 64,
    "num_layers": 2,
    "num_heads": 4,
    "relative_attention_num_buckets": 32,
    "feed_forward_proj": "gated-gelu",
    "is_encoder_decoder": False,
    "use_cache": False,
}


def tiny_parts(*, guidance: bool = True, seed: int = 20) -> dict[str, Any]:
    """The tiny model's modules (transformer, vae, text_encoder, text_encoder_2) from fixed seeds."""
    import torch
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(**{**TINY_TRANSFORMER, "guidance_embeds": guidance})
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(**TINY_VAE)
    torch.manual_seed(seed + 2)
    clip = CLIPTextModel(CLIPTextConfig(**TINY_CLIP))
    torch.manual_seed(seed + 3)
    t5_config = T5Config(**TINY_T5)
    t5_config.dense_act_fn = "gelu_pytorch_tanh"
    t5 = T5EncoderModel(t5_config)
    return {"transformer": transformer, "vae": vae, "text_encoder": clip, "text_encoder_2": t5}


def write_files(parts: dict[str, Any], folder: Path, transformer_file: str = TINY_FLUX_FILE) -> None:
    """Write the parts as an owner's files: the BFL transformer and the ae / clip_l / t5xxl modules."""
    import torch
    from safetensors.torch import save_file

    from engine.flux.keys import BFL_PREFIX, to_bfl
    from engine.flux.load import CLIP_HEADS_KEY, vae_state

    folder.mkdir(parents=True, exist_ok=True)
    bfl = to_bfl(parts["transformer"].state_dict())
    save_file({BFL_PREFIX + k: v.contiguous() for k, v in bfl.items()}, str(folder / transformer_file))
    save_file(vae_state(parts["vae"]), str(folder / MODULE_FILES["ae"]))
    clip = parts["text_encoder"]
    clip_state = {
        ("text_model." + k if not k.startswith("text_model.") else k): v.contiguous()
        for k, v in clip.state_dict().items()
        if not k.endswith("position_ids")
    }
    heads = str(clip.config.num_attention_heads)
    save_file(clip_state, str(folder / MODULE_FILES["clip_l"]), metadata={CLIP_HEADS_KEY: heads})
    t5 = parts["text_encoder_2"].state_dict()
    t5_state = {k: v.to(torch.float16).contiguous() for k, v in t5.items() if k != "encoder.embed_tokens.weight"}
    save_file(t5_state, str(folder / MODULE_FILES["t5xxl"]))


def build_tiny_flux(cache_dir: Path) -> Path:
    """Build builtin:tiny-flux once into the cache; returns its folder (the transformer file and its modules)."""
    from engine.models.builtin import publish

    folder = cache_dir / "builtin" / TINY_FLUX_VERSION
    if (folder / TINY_FLUX_FILE).exists():
        return folder
    parts = tiny_parts()
    return publish(folder, TINY_FLUX_FILE, lambda partial: write_files(parts, partial))
