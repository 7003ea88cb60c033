"""What every model family provides to the sampling loop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from engine.embeddings import Embedding


@dataclass(frozen=True)
class TextCond:
    """One encoded text: the cross-attention tensor (1, 77*k, C) and, for families that use one, a vector
    conditioning (1, D) such as SDXL's pooled text embedding."""

    crossattn: torch.Tensor
    vector: torch.Tensor | None = None


UNetFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
"""`unet_fn(x, t, crossattn, vector)`: the model's prediction (eps or v) for a batch, in float32. The rows of
`crossattn` (and `vector`) match the rows of `x`."""


class ModelFamily(Protocol):
    """One loaded model's text encoding and UNet call."""

    def encode_schedule(self, texts: list[str], clip_skip: int, state: str, *, negative: bool) -> list[TextCond]:
        """Encode the texts of one prompt's schedule (A1111 syntax, no editing or `AND` left) as A1111 does: as one
        batch. `negative` says it is the negative prompt's; `state` keys the cache (the active LoRAs)."""
        ...

    def unet_fn(self, width: int, height: int, *, guidance: float | None = None) -> UNetFn:
        """The UNet call for a pass that makes `width` x `height` images; `guidance` is a guidance-distilled
        model's embedded guidance scale (Flux.1 dev's distilled CFG), which other families ignore."""
        ...

    def take_used_embeddings(self) -> Sequence[Embedding]:
        """The textual-inversion embeddings encoded since the last call (for `TI hashes`), then forget them."""
        ...
