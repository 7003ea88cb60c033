"""SD 1.x: one CLIP text encoder (A1111's chunked, emphasised conditioning) and a UNet conditioned on it alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from engine.conditioning import Conditioner
from engine.embeddings import Embedding
from engine.families.base import TextCond, UNetFn


class SD1Family:
    def __init__(self, unet: Any, conditioner: Conditioner) -> None:
        self.unet = unet
        self.conditioner = conditioner

    def encode_schedule(self, texts: list[str], clip_skip: int, state: str, *, negative: bool) -> list[TextCond]:
        return [TextCond(z) for z in self.conditioner.encode_batch(texts, clip_skip, state).crossattn]

    def unet_fn(self, width: int, height: int, *, guidance: float | None = None) -> UNetFn:
        unet = self.unet

        def call(x: torch.Tensor, t: torch.Tensor, crossattn: torch.Tensor, _: torch.Tensor | None) -> torch.Tensor:
            dtype = unet.dtype
            out: torch.Tensor = unet(x.to(dtype), t, encoder_hidden_states=crossattn.to(dtype)).sample.float()
            return out

        return call

    def take_used_embeddings(self) -> Sequence[Embedding]:
        return self.conditioner.take_used()
