"""A model's layer shapes without its weights: what a LoRA is checked against before a job is queued.

The UNet and text encoders are built on torch's `meta` device from their config files (no memory, ~70 ms for SD
1.5), so a LoRA whose layers do not fit is refused with the reason before it reaches the GPU worker. Keys are
`<component>.<module path>` (`unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`), values the shape
of that module's weight.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

LayerShapes = Mapping[str, tuple[int, ...]]
COMPONENTS = ("unet", "transformer", "text_encoder", "text_encoder_2")


def module_shapes(component: str, module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """`component.<module>` -> weight shape for every weighted module of `module` (real or meta)."""
    shapes = {}
    for name, param in module.named_parameters():
        if name.endswith(".weight") and ".lora_" not in name:  # a LoRA's own adapter weights are not layers
            # A GGUF-quantized weight's shape counts its blocks' bytes; the layer's is its `quant_shape`.
            shape = tuple(getattr(param, "quant_shape", param.shape))
            shapes[canonical(f"{component}.{name[: -len('.weight')].replace('.base_layer', '')}")] = shape
    return shapes


def canonical(key: str) -> str:
    """A layer key as both sides name it: transformers' CLIPTextModel names its layers with or without a
    `text_model.` level depending on the class and version (peft matches by suffix, so either works)."""
    component, _, rest = key.partition(".")
    return f"{component}.{rest.removeprefix('text_model.')}"


def layer_shapes_of(folder: Path) -> dict[str, tuple[int, ...]]:
    """The layer shapes of the diffusers-layout model whose configs are in `folder` (weights never read)."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    shapes: dict[str, tuple[int, ...]] = {}
    with torch.device("meta"):
        unet_config = _config(folder / "unet" / "config.json")
        if unet_config is not None:
            shapes |= module_shapes("unet", UNet2DConditionModel.from_config(unet_config))
        for component, cls in (("text_encoder", CLIPTextModel), ("text_encoder_2", CLIPTextModelWithProjection)):
            config = _config(folder / component / "config.json")
            if config is not None:
                keep = {k: v for k, v in config.items() if not k.startswith("_") and k != "architectures"}
                shapes |= module_shapes(component, cls(CLIPTextConfig(**keep)))
    return shapes


def _config(path: Path) -> dict[str, Any] | None:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None
