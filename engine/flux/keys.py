"""Black Forest Labs' Flux.1 tensor names <-> diffusers' `FluxTransformer2DModel`, driven by the tensors' shapes.

diffusers' own converter (`convert_flux_transformer_checkpoint_to_diffusers`) hard-codes a width of 3072, so it
cannot read a pruned or tiny model; here every split size comes from the tensors: a fused q/k/v is cut in three
equal parts, and a single block's `linear1` (q, k, v and the MLP's input) into three times the width it takes and
the MLP's part, the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
    indices = {int(k.split(".")[1]) for k in keys if k.startswith(kind + ".")}  # also diffusers' block names
    return max(indices) + 1 if indices else 0


@dataclass(frozen=True)
class Link:
    """One BFL layer and the diffusers layers it is: module names (each tensor with `.weight` and, where it has one,
    `.bias`), or with `exact` whole tensor names. Several diffusers layers are the BFL one's rows in order (a fused
    q/k/v, a single block's q/k/v/MLP); `swap` says the two halves of the rows trade places (the final
    modulation: BFL's shift/scale is diffusers' scale/shift, a swap that is its own inverse)."""

    bfl: str
    diffusers: tuple[str, ...]
    exact: bool = False
    swap: bool = False

    @property
    def suffixes(self) -> tuple[str, ...]:
        return ("",) if self.exact else (".weight", ".bias")


def global_links() -> list[Link]:
    return [Link(bfl, (diffusers,)) for diffusers, bfl in _GLOBAL.items()] + [
        Link(_NORM_OUT[1], (_NORM_OUT[0],), swap=True)
    ]


def block_links(kind: str, index: int) -> list[Link]:
    """The links of `double_blocks.<index>` or `single_blocks.<index>`."""
    if kind == "double_blocks":
        d, b = f"transformer_blocks.{index}.", f"double_blocks.{index}."
        renamed, norms = _DOUBLE, _DOUBLE_NORMS
        fused = [Link(b + bfl, tuple(d + name for name in names)) for bfl, names in _DOUBLE_FUSED.items()]
    else:
        d, b = f"single_transformer_blocks.{index}.", f"single_blocks.{index}."
        renamed, norms = _SINGLE, _SINGLE_NORMS
        fused = [Link(b + "linear1", tuple(d + name for name in _SINGLE_FUSED))]
    return [
        *(Link(b + bfl, (d + diffusers,)) for diffusers, bfl in renamed.items()),
        *(Link(b + bfl, (d + diffusers,), exact=True) for diffusers, bfl in norms.items()),
        *fused,
    ]


def links(double: int, single: int) -> list[Link]:
    """Every link of a transformer with these block counts."""
    out = global_links()
    for i in range(double):
        out += block_links("double_blocks", i)
    for i in range(single):
        out += block_links("single_blocks", i)
    return out


def find_link(bfl: str) -> Link | None:
    """The link of a BFL layer name (`double_blocks.0.img_attn.qkv`), or None for what no Flux layer is called."""
    parts = bfl.split(".")
    if parts[0] in ("double_blocks", "single_blocks") and len(parts) > 2 and parts[1].isdigit():
        candidates = block_links(parts[0], int(parts[1]))
    else:
        candidates = global_links()
    return next((link for link in candidates if link.bfl == bfl and not link.exact), None)


def unfuse(link: Link, tensor: Any, width: int) -> list[Any]:
    """A BFL tensor (or a LoRA's up weight for it) as its diffusers layers' rows: halves swapped where the link
    says so; a fused q/k/v cut in three equal parts, a single block's `linear1` into three of `width` (its input's)
    and the MLP's rest."""
    import torch

    if link.swap:
        first, second = tensor.chunk(2, dim=0)
        tensor = torch.cat([second, first], dim=0)
    count = len(link.diffusers)
    if count == 1:
        return [tensor]
    rows = int(tensor.shape[0])
    sizes = [rows // 3] * 3 if count == 3 else [width, width, width, rows - 3 * width]
    return list(torch.split(tensor, sizes, dim=0))


def to_diffusers(state: Mapping[str, Any]) -> dict[str, Any]:
    """A BFL-layout transformer state dict (no prefix) as diffusers names it. Unknown tensors raise KeyError."""
    source = dict(state)
    out: dict[str, Any] = {}
    for link in links(block_count(source, "double_blocks"), block_count(source, "single_blocks")):
        weight = source.get(link.bfl + ".weight")
        # A fused layer's width is its input's (a GGUF-quantized weight's counted in values, not bytes).
        width = int(getattr(weight, "quant_shape", getattr(weight, "shape", (0, 0)))[-1]) if weight is not None else 0
        for suffix in link.suffixes:
            if link.bfl + suffix in source:
                parts = unfuse(link, source.pop(link.bfl + suffix), width)
                out.update(zip([name + suffix for name in link.diffusers], parts, strict=True))
    if source:
        raise KeyError(f"tensors that are not Flux.1's: {', '.join(sorted(source)[:4])}")
    return out


def to_bfl(state: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of `to_diffusers`: a diffusers `FluxTransformer2DModel` state dict in BFL names (no prefix)."""
    import torch

    source = dict(state)
    out: dict[str, Any] = {}
    double, single = block_count(source, "transformer_blocks"), block_count(source, "single_transformer_blocks")
    for link in links(double, single):
        for suffix in link.suffixes:
            names = [name + suffix for name in link.diffusers]
            if names[0] in source:
                tensor = torch.cat([source.pop(name) for name in names], dim=0)
                out[link.bfl + suffix] = unfuse(link, tensor, 0)[0] if link.swap else tensor
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
