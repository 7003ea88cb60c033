"""Single-file (A1111/civitai "original" layout) checkpoints: the header reader, offline loading with local config
folders, and export of a diffusers SD 1.x or SDXL pipeline back to a single file (what family a file is:
`engine.models.detect`).

diffusers has no converter from its own layout to the original one; `export_single_file` is the inverse of
diffusers' `convert_ldm_*_checkpoint`, generalised to any number of blocks so tiny models round-trip too.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path
from typing import Any

from engine.models.detect import EASEL_CONFIG_KEY

_MAX_HEADER = 100 * 1024 * 1024


def read_header(path: Path) -> dict[str, Any]:
    """The safetensors JSON header (tensor names, shapes, metadata) without reading any weights."""
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError("not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", raw)
        if length > _MAX_HEADER:
            raise ValueError("not a safetensors file (header too large)")
        try:
            header: dict[str, Any] = json.loads(fh.read(length))
        except ValueError:
            raise ValueError("not a safetensors file (unreadable header)") from None
        size = os.fstat(fh.fileno()).st_size
    _check_header(header)
    promised = (
        8 + length + max((info["data_offsets"][1] for k, info in header.items() if k != "__metadata__"), default=0)
    )
    if size < promised:
        raise ValueError(
            f"damaged or incomplete download: the file has {size:,} bytes, its header promises {promised:,}"
        )
    return header


def _check_header(header: Any) -> None:
    """The safetensors header's shape (what the library itself would refuse, said in one line): tensors with a
    dtype, a shape of sizes and two offsets; metadata of text values."""
    if not isinstance(header, dict):
        raise ValueError("not a safetensors file (its header is not a table)")
    metadata = header.get("__metadata__")
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise ValueError("damaged safetensors metadata (its values must all be text)")
    for key, info in header.items():
        if key == "__metadata__":
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (
            isinstance(shape, list)
            and all(isinstance(n, int) and n >= 0 for n in shape)
            and isinstance(info.get("dtype"), str)
            and isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(n, int) for n in offsets)
        ):
            raise ValueError(f"damaged safetensors header (tensor {key[:80]!r})")


def _unet_map(config: dict[str, Any], keys: list[str]) -> dict[str, str]:
    n = len(config["block_out_channels"])
    per = config["layers_per_block"]
    down_attn = ["CrossAttn" in t for t in config["down_block_types"]]
    up_attn = ["CrossAttn" in t for t in config["up_block_types"]]
    layer: list[tuple[str, str]] = []
    for i in range(n):
        for j in range(per):
            layer.append((f"input_blocks.{(per + 1) * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}."))
            if down_attn[i]:
                layer.append((f"input_blocks.{(per + 1) * i + j + 1}.1.", f"down_blocks.{i}.attentions.{j}."))
        for j in range(per + 1):
            layer.append((f"output_blocks.{(per + 1) * i + j}.0.", f"up_blocks.{i}.resnets.{j}."))
            if up_attn[i]:
                layer.append((f"output_blocks.{(per + 1) * i + j}.1.", f"up_blocks.{i}.attentions.{j}."))
        if i < n - 1:
            layer.append((f"input_blocks.{(per + 1) * (i + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv."))
            slot = 2 if up_attn[i] else 1
            layer.append((f"output_blocks.{(per + 1) * i + per}.{slot}.", f"up_blocks.{i}.upsamplers.0."))
    layer.append(("middle_block.1.", "mid_block.attentions.0."))
    for j in range(2):
        layer.append((f"middle_block.{2 * j}.", f"mid_block.resnets.{j}."))
    direct = {
        "add_embedding.linear_1.weight": "label_emb.0.0.weight",  # SDXL's size and pooled-text embedding
        "add_embedding.linear_1.bias": "label_emb.0.0.bias",
        "add_embedding.linear_2.weight": "label_emb.0.2.weight",
        "add_embedding.linear_2.bias": "label_emb.0.2.bias",
        "time_embedding.linear_1.weight": "time_embed.0.weight",
        "time_embedding.linear_1.bias": "time_embed.0.bias",
        "time_embedding.linear_2.weight": "time_embed.2.weight",
        "time_embedding.linear_2.bias": "time_embed.2.bias",
        "conv_in.weight": "input_blocks.0.0.weight",
        "conv_in.bias": "input_blocks.0.0.bias",
        "conv_norm_out.weight": "out.0.weight",
        "conv_norm_out.bias": "out.0.bias",
        "conv_out.weight": "out.2.weight",
        "conv_out.bias": "out.2.bias",
    }
    resnet = [
        ("in_layers.0", "norm1"),
        ("in_layers.2", "conv1"),
        ("out_layers.0", "norm2"),
        ("out_layers.3", "conv2"),
        ("emb_layers.1", "time_emb_proj"),
        ("skip_connection", "conv_shortcut"),
    ]
    mapping: dict[str, str] = {}
    for key in keys:
        new = direct.get(key, key)
        if "resnets" in key:
            for sd_part, hf_part in resnet:
                new = new.replace(hf_part, sd_part)
        for sd_part, hf_part in layer:
            new = new.replace(hf_part, sd_part)
        mapping[key] = "model.diffusion_model." + new
    return mapping


def _vae_map(config: dict[str, Any], keys: list[str]) -> dict[str, str]:
    n = len(config["block_out_channels"])
    per = config["layers_per_block"]
    layer: list[tuple[str, str]] = [
        ("nin_shortcut", "conv_shortcut"),
        ("norm_out", "conv_norm_out"),
        ("mid.attn_1.", "mid_block.attentions.0."),
    ]
    for i in range(n):
        for j in range(per):
            layer.append((f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}."))
        if i < n - 1:
            layer.append((f"down.{i}.downsample.", f"down_blocks.{i}.downsamplers.0."))
            layer.append((f"up.{n - 1 - i}.upsample.", f"up_blocks.{i}.upsamplers.0."))
        for j in range(per + 1):
            layer.append((f"decoder.up.{n - 1 - i}.block.{j}.", f"decoder.up_blocks.{i}.resnets.{j}."))
    for j in range(2):
        layer.append((f"mid.block_{j + 1}.", f"mid_block.resnets.{j}."))
    attn = [
        ("norm.", "group_norm."),
        ("q.", "to_q."),
        ("k.", "to_k."),
        ("v.", "to_v."),
        ("proj_out.", "to_out.0."),
    ]
    mapping: dict[str, str] = {}
    for key in keys:
        new = key
        for sd_part, hf_part in layer:
            new = new.replace(hf_part, sd_part)
        if "attentions" in key:
            for sd_part, hf_part in attn:
                new = new.replace(hf_part, sd_part)
        mapping[key] = "first_stage_model." + new
    return mapping


def export_single_file(pipe: Any, path: Path, *, easel_config: str | None = None) -> None:
    """Write an SD 1.x or SDXL diffusers pipeline as one original-layout (A1111/civitai) `.safetensors` checkpoint."""
    from safetensors.torch import save_file

    unet = pipe.unet.state_dict()
    vae = pipe.vae.state_dict()
    state: dict[str, Any] = {}
    for hf, sd in _unet_map(dict(pipe.unet.config), list(unet)).items():
        state[sd] = unet[hf]
    for hf, sd in _vae_map(dict(pipe.vae.config), list(vae)).items():
        tensor = vae[hf]
        if "mid.attn_1." in sd and tensor.ndim == 2:
            tensor = tensor.reshape(*tensor.shape, 1, 1)  # the original VAE attention uses 1x1 convolutions
        state[sd] = tensor
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    clip_l = "conditioner.embedders.0.transformer." if sdxl else "cond_stage_model.transformer."
    for key, tensor in pipe.text_encoder.state_dict().items():
        # Real files name the CLIP weights `...transformer.text_model.*`; transformers 5 drops that level.
        state[clip_l + (key if key.startswith("text_model.") else "text_model." + key)] = tensor
    if sdxl:
        state.update(_open_clip_state(pipe.text_encoder_2.state_dict(), "conditioner.embedders.1.model."))
    metadata = {EASEL_CONFIG_KEY: easel_config} if easel_config else None
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=metadata)


def _open_clip_state(hf: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A transformers CLIPTextModelWithProjection in OpenCLIP's layout (SDXL's second text encoder): q, k and v fused
    into `in_proj`, and the projection stored transposed (OpenCLIP computes `x @ text_projection`)."""
    import torch

    def get(name: str) -> Any:
        return hf.get("text_model." + name, hf.get(name))

    out: dict[str, Any] = {
        prefix + "token_embedding.weight": get("embeddings.token_embedding.weight"),
        prefix + "positional_embedding": get("embeddings.position_embedding.weight"),
        prefix + "ln_final.weight": get("final_layer_norm.weight"),
        prefix + "ln_final.bias": get("final_layer_norm.bias"),
        prefix + "text_projection": hf["text_projection.weight"].T,
    }
    layers = {int(m.group(1)) for k in hf if (m := re.search(r"encoder\.layers\.(\d+)\.", k))}
    renames = {
        "self_attn.out_proj": "attn.out_proj",
        "layer_norm1": "ln_1",
        "layer_norm2": "ln_2",
        "mlp.fc1": "mlp.c_fc",
        "mlp.fc2": "mlp.c_proj",
    }
    for i in sorted(layers):
        src, dst = f"encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for part in ("weight", "bias"):
            fused = [get(f"{src}self_attn.{p}_proj.{part}") for p in "qkv"]
            out[f"{dst}attn.in_proj_{part}"] = torch.cat(fused, 0)
            for hf_name, oc_name in renames.items():
                out[f"{dst}{oc_name}.{part}"] = get(f"{src}{hf_name}.{part}")
    return out


def load_single_file(path: Path, config_folder: Path, *, sdxl: bool = False, dtype: Any = None) -> Any:
    """Load an SD 1.x or SDXL single-file checkpoint fully offline, with a local config folder. The file is
    memory-mapped (safetensors), so weights are read once."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    cls = StableDiffusionXLPipeline if sdxl else StableDiffusionPipeline
    kwargs: dict[str, Any] = {"config": str(config_folder), "local_files_only": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    return cls.from_single_file(str(path), **kwargs)
