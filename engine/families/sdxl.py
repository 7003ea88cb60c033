"""SDXL (and Pony, Illustrious, NoobAI): two text encoders and a UNet that also takes a vector conditioning, A1111's
way (`sd_models_xl.py`, `sd_hijack_clip.py`, sgm's `GeneralConditioner`).

- Each encoder chunks, breaks, backtracks and weighs the prompt on its own (the same chunk boundaries: one vocabulary)
  and restores the emphasis mean on its own tensor; the two are then concatenated on the channel axis
  (CLIP-L 768 + OpenCLIP-G 1280 = 2048).
- The vector is OpenCLIP-G's pooled text embedding of the first chunk (never emphasised), then the size conditioning:
  original size = target size = the pass's (height, width), crop (0, 0), each embedded by the UNet (diffusers'
  `add_time_proj`, the same sinusoids as sgm's `timestep_embedding`). A1111 builds the sizes in the inference dtype,
  so they are rounded through it first.
- An all-empty negative prompt is zeros, both tensors (A1111's `force_zero_negative_prompt`); the sizes stay.
- Clip skip is recorded but, as in A1111's default (`sdxl_clip_l_skip` off), changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from engine.conditioning import Conditioner
from engine.embeddings import Embedding
from engine.families.base import TextCond, UNetFn


class SDXLFamily:
    def __init__(self, unet: Any, clip_l: Conditioner, clip_g: Conditioner) -> None:
        self.unet = unet
        self.clip_l = clip_l
        self.clip_g = clip_g

    def encode_schedule(self, texts: list[str], clip_skip: int, state: str, *, negative: bool) -> list[TextCond]:
        first = self.clip_l.encode_batch(texts, clip_skip, state)
        second = self.clip_g.encode_batch(texts, clip_skip, state)
        assert second.pooled is not None
        conds = []
        for z_l, z_g, pooled in zip(first.crossattn, second.crossattn, second.pooled, strict=True):
            conds.append(TextCond(torch.cat([z_l, z_g], dim=2), pooled))
        if negative and all(text == "" for text in texts):
            return [TextCond(torch.zeros_like(c.crossattn), torch.zeros_like(second.pooled[0])) for c in conds]
        return conds

    def unet_fn(self, width: int, height: int, *, guidance: float | None = None) -> UNetFn:
        unet = self.unet
        dtype = unet.dtype
        # original (h, w), crop (top, left), target (h, w), rounded through the inference dtype as A1111 builds them.
        sizes = torch.tensor([[height, width, 0, 0, height, width]], dtype=dtype, device=unet.device)

        def call(x: torch.Tensor, t: torch.Tensor, crossattn: torch.Tensor, vector: torch.Tensor | None) -> Any:
            assert vector is not None
            added = {"text_embeds": vector.to(dtype), "time_ids": sizes.expand(x.shape[0], -1)}
            return unet(
                x.to(dtype), t, encoder_hidden_states=crossattn.to(dtype), added_cond_kwargs=added
            ).sample.float()

        return call

    def take_used_embeddings(self) -> Sequence[Embedding]:
        used = {e.name: e for e in [*self.clip_l.take_used(), *self.clip_g.take_used()]}
        return list(used.values())
