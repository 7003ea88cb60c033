"""Flux.1 LoRAs in every format civitai carries, as one diffusers/peft state dict (`transformer.<module>.lora_A`):

- kohya (`lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight`, `.alpha`) and BFL-named peft files
  (`diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight`): converted here by the layers' shapes. A fused q/k/v
  (or a single block's q/k/v/MLP) is one LoRA whose up weight is split like the layer's rows, each part keeping the
  whole down weight; kohya's alpha / rank is folded into the down weight. diffusers' kohya converter hard-codes
  Flux.1's width (3072), so it is not used. CLIP-L parts (`lora_te1_`) become `text_encoder` layers.
- XLabs (`double_blocks.0.processor.qkv_lora1.down.weight`): diffusers' own converter (it splits by shape).
- diffusers / ai-toolkit / peft (`transformer.transformer_blocks.0.attn.to_q.lora_A.weight`): taken as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from engine.flux.keys import Link, block_links, find_link, global_links, unfuse

FLUX_LORA_MARKERS = ("double_blocks", "single_blocks", "transformer.transformer_blocks.",
                     "transformer.single_transformer_blocks.")  # fmt: skip
_KOHYA_BLOCK = re.compile(r"^(double_blocks|single_blocks)_(\d+)_(.+)$")
_KOHYA_TE = re.compile(r"^lora_te1_text_model_encoder_layers_(\d+)_(self_attn_(?:q|k|v|out)_proj|mlp_fc[12])$")
_DOWN_UP = ((".lora_down.weight", ".lora_up.weight"), (".lora_A.weight", ".lora_B.weight"))


def is_flux_lora(keys: list[str]) -> bool:
    return any(marker in key for key in keys for marker in FLUX_LORA_MARKERS)


def _link(name: str) -> Link | None:
    """The Flux layer a LoRA names, BFL-dotted (`double_blocks.0.img_attn.qkv`) or as kohya writes it
    (`double_blocks_0_img_attn_qkv`: its `_`s are matched against the block's layers)."""
    if "." in name:
        return find_link(name)
    found = _KOHYA_BLOCK.match(name)
    candidates = block_links(found[1], int(found[2])) if found is not None else global_links()
    return next((link for link in candidates if not link.exact and link.bfl.replace(".", "_") == name), None)


def to_peft(state: Mapping[str, Any]) -> dict[str, Any]:
    """Any Flux LoRA's tensors as a diffusers/peft state dict (see the module's docstring). KeyError names a layer
    no Flux model has."""
    keys = list(state)
    if any(".processor." in key for key in keys):  # XLabs
        from diffusers.loaders.lora_conversion_utils import _convert_xlabs_flux_lora_to_diffusers

        converted: dict[str, Any] = _convert_xlabs_flux_lora_to_diffusers(dict(state))
        return converted
    if all(key.startswith(("transformer.", "text_encoder.")) for key in keys):
        return dict(state)
    out: dict[str, Any] = {}
    for key, down in state.items():
        for down_end, up_end in _DOWN_UP:
            if not key.endswith(down_end):
                continue
            base = key[: -len(down_end)]
            up = state[base + up_end]
            alpha = state.get(base + ".alpha")
            rank = int(down.shape[0])
            scaled = down * (float(alpha) / rank) if alpha is not None else down
            name = base.removeprefix("lora_unet_")
            text = _KOHYA_TE.match(base)
            if text is not None:
                layer, part = text.groups()
                clip = f"text_encoder.text_model.encoder.layers.{layer}." + part.replace("self_attn_", "self_attn.")
                clip = clip.replace("mlp_fc", "mlp.fc")
                out[clip + ".lora_A.weight"], out[clip + ".lora_B.weight"] = scaled, up
                break
            for prefix in ("diffusion_model.", "model.diffusion_model.", "transformer."):
                name = name.removeprefix(prefix)
            link = _link(name)
            if link is None:
                raise KeyError(f"{base} patches no Flux.1 layer")
            # The up weight's rows split like the layer's; each part keeps the whole down weight.
            for diffusers, part in zip(link.diffusers, unfuse(link, up, int(down.shape[1])), strict=True):
                out[f"transformer.{diffusers}.lora_A.weight"] = scaled
                out[f"transformer.{diffusers}.lora_B.weight"] = part
            break
    return out
