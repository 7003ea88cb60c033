"""Black Forest Labs' Flux.1 tensor names <-> diffusers' `FluxTransformer2DModel`, driven by the tensors' shapes.

diffusers' own converter (`convert_flux_transformer_checkpoint_to_diffusers`) hard-codes a width of 3072, so it
cannot read a pruned or tiny model; here every split size comes from the tensors: a fused q/k/v is cut in three
equal parts, and a single block's `linear1` (q, k, v and the MLP's input) into three times the width it takes and
the MLP's part, the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

BFL_PREFIX = "model.diffusion_model."

# diffusers name <- BFL name, for tensors that are renamed only (each with `.weight` and, where it has one, `.bias`).
_GLOBAL = {
    "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "context_embedder": "txt_in",
    "x_embedder": "img_in",
    "proj_out": "final_layer.linear",
}
_DOUBLE = {
    "norm1.linear": "img_mod.lin",
    "norm1_context.linear": "txt_mod.lin",
    "attn.to_out.0": "img_attn.proj",
    "attn.to_add_out": "txt_attn.proj",
    "ff.net.0.proj": "img_mlp.0",
    "ff.net.2": "img_mlp.2",
    "ff_context.net.0.proj": "txt_mlp.0",
    "ff_context.net.2": "txt_mlp.2",
}
_DOUBLE_NORMS = {
    "attn.norm_q.weight": "img_attn.norm.query_norm.scale",
    "attn.norm_k.weight": "img_attn.norm.key_norm.scale",
    "attn.norm_added_q.weight": "txt_attn.norm.query_norm.scale",
    "attn.norm_added_k.weight": "txt_attn.norm.key_norm.scale",
}
_DOUBLE_FUSED = {"img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
                 "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")}  # fmt: skip
_SINGLE = {"norm.linear": "modulation.lin", "proj_out": "linear2"}
_SINGLE_NORMS = {"attn.norm_q.weight": "norm.query_norm.scale", "attn.norm_k.weight": "norm.key_norm.scale"}
_SINGLE_FUSED = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")
_NORM_OUT = ("norm_out.linear", "final_layer.adaLN_modulation.1")


def strip_prefix(keys: Iterable[str]) -> str:
    """The prefix a file's transformer tensors carry: `model.diffusion_model.` or none."""
    return BFL_PREFIX if any(k.startswith(BFL_PREFIX + "double_blocks.") for k in keys) else ""


def block_count(keys: Iterable[str], kind: str) -> int:
    """How many `double_blocks` / `single_blocks` a file has (the highest index + 1)."""
    indices = {int(k.split(".")[1]) for k in keys if k.startswith(kind + ".")}
    return max(indices) + 1 if indices else 0


def _swap_halves(tensor: Any) -> Any:
    import torch

    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def to_diffusers(state: Mapping[str, Any]) -> dict[str, Any]:
    """A BFL-layout transformer state dict (no prefix) as diffusers names it. Unknown tensors raise KeyError."""
    import torch

    source = dict(state)
    out: dict[str, Any] = {}

    def take(bfl: str) -> Any:
        return source.pop(bfl)

    def rename(diffusers: str, bfl: str) -> None:
        for suffix in (".weight", ".bias"):
            if bfl + suffix in source:
                out[diffusers + suffix] = take(bfl + suffix)

    for diffusers, bfl in _GLOBAL.items():
        rename(diffusers, bfl)
    for suffix in (".weight", ".bias"):
        out[_NORM_OUT[0] + suffix] = _swap_halves(take(_NORM_OUT[1] + suffix))
    for i in range(block_count(source, "double_blocks")):
        d, b = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for diffusers, bfl in _DOUBLE.items():
            rename(d + diffusers, b + bfl)
        for diffusers, bfl in _DOUBLE_NORMS.items():
            out[d + diffusers] = take(b + bfl)
        for bfl, names in _DOUBLE_FUSED.items():
            for suffix in (".weight", ".bias"):
                for name, part in zip(names, torch.chunk(take(b + bfl + suffix), 3, dim=0), strict=True):
                    out[d + name + suffix] = part
    for i in range(block_count(source, "single_blocks")):
        d, b = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for diffusers, bfl in _SINGLE.items():
            rename(d + diffusers, b + bfl)
        for diffusers, bfl in _SINGLE_NORMS.items():
            out[d + diffusers] = take(b + bfl)
        fused = take(b + "linear1.weight")
        # linear1: width -> q, k, v (each the width) and the MLP's input (a GGUF block's values counted, not bytes)
        width = int(getattr(fused, "quant_shape", fused.shape)[1])
        sizes = [width, width, width, int(fused.shape[0]) - 3 * width]
        for name, part in zip(_SINGLE_FUSED, torch.split(fused, sizes, dim=0), strict=True):
            out[d + name + ".weight"] = part
        for name, part in zip(_SINGLE_FUSED, torch.split(take(b + "linear1.bias"), sizes, dim=0), strict=True):
            out[d + name + ".bias"] = part
    if source:
        raise KeyError(f"tensors that are not Flux.1's: {', '.join(sorted(source)[:4])}")
    return out


def to_bfl(state: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of `to_diffusers`: a diffusers `FluxTransformer2DModel` state dict in BFL names (no prefix)."""
    import torch

    source = dict(state)
    out: dict[str, Any] = {}

    def rename(diffusers: str, bfl: str) -> None:
        for suffix in (".weight", ".bias"):
            if diffusers + suffix in source:
                out[bfl + suffix] = source.pop(diffusers + suffix)

    for diffusers, bfl in _GLOBAL.items():
        rename(diffusers, bfl)
    for suffix in (".weight", ".bias"):
        out[_NORM_OUT[1] + suffix] = _swap_halves(source.pop(_NORM_OUT[0] + suffix))
    doubles = {int(k.split(".")[1]) for k in source if k.startswith("transformer_blocks.")}
    for i in sorted(doubles):
        d, b = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for diffusers, bfl in _DOUBLE.items():
            rename(d + diffusers, b + bfl)
        for diffusers, bfl in _DOUBLE_NORMS.items():
            out[b + bfl] = source.pop(d + diffusers)
        for bfl, names in _DOUBLE_FUSED.items():
            for suffix in (".weight", ".bias"):
                out[b + bfl + suffix] = torch.cat([source.pop(d + name + suffix) for name in names], dim=0)
    singles = {int(k.split(".")[1]) for k in source if k.startswith("single_transformer_blocks.")}
    for i in sorted(singles):
        d, b = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for diffusers, bfl in _SINGLE.items():
            rename(d + diffusers, b + bfl)
        for diffusers, bfl in _SINGLE_NORMS.items():
            out[b + bfl] = source.pop(d + diffusers)
        for suffix in (".weight", ".bias"):
            out[b + "linear1" + suffix] = torch.cat([source.pop(d + name + suffix) for name in _SINGLE_FUSED], dim=0)
    if source:
        raise KeyError(f"tensors that are not Flux.1's: {', '.join(sorted(source)[:4])}")
    return out


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """The rotary embedding's axes (index, height, width) for a head width: Flux.1's (16, 56, 56) at 128, and the
    same proportions (an eighth, then halves, each even) for narrower test models."""
    first = head_dim // 8 // 2 * 2
    rest = (head_dim - first) // 4 * 2
    if first + 2 * rest != head_dim or first == 0:
        raise ValueError(f"a Flux attention head of width {head_dim} has no rotary split")
    return first, rest, rest


def transformer_config(shapes: Mapping[str, list[int]]) -> dict[str, Any]:
    """`FluxTransformer2DModel`'s config from a BFL state dict's shapes (no prefix): the width, the head width (the
    q/k norm's), the block counts, the image input (64 for dev and schnell, 384 for Fill), the text widths."""
    head_dim = int(shapes["double_blocks.0.img_attn.norm.query_norm.scale"][0])
    width = int(shapes["img_in.weight"][0])
    return {
        "_class_name": "FluxTransformer2DModel",
        "patch_size": 1,
        "in_channels": int(shapes["img_in.weight"][1]),
        "out_channels": int(shapes["final_layer.linear.weight"][0]),
        "num_layers": block_count(shapes, "double_blocks"),
        "num_single_layers": block_count(shapes, "single_blocks"),
        "attention_head_dim": head_dim,
        "num_attention_heads": width // head_dim,
        "joint_attention_dim": int(shapes["txt_in.weight"][1]),
        "pooled_projection_dim": int(shapes["vector_in.in_layer.weight"][1]),
        "guidance_embeds": "guidance_in.in_layer.weight" in shapes,
        "axes_dims_rope": list(rope_axes(head_dim)),
    }
