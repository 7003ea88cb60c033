"""Flux.1, as Forge runs it (`backend/diffusion_engine/flux.py`, `backend/text_processing/t5_engine.py`,
`backend/nn/flux.py`).

- Text: T5-XXL with A1111's emphasis syntax. Each emphasis piece is tokenized on its own (no special tokens, never
  truncated); a chunk ends with the end token (id 1) and is padded with id 0 to at least 256 tokens; "Original"
  emphasis multiplies the encoder's output and restores its mean, chunk by chunk. `BREAK` starts a new chunk, each
  padded to the longest; Easel joins the chunks along the sequence (Forge stacks them as a batch and then keeps
  only the first for one image, dropping everything after the first `BREAK`).
- The vector: CLIP-L's pooled output (the end token's final-layer-normed state) of the prompt's first 75-token chunk,
  unprojected; clip skip does not change it.
- The transformer: the 16-channel latent padded (circularly) to even sides, patchified 2 x 2 into tokens with their
  (0, row, column) positions, the distilled guidance scale embedded for dev models (ignored by schnell), and the
  timestep equal to sigma.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from engine.conditioning import Conditioner
from engine.embeddings import Embedding
from engine.families.base import TextCond, UNetFn
from engine.prompts.attention import parse_prompt_attention

T5_MIN_LENGTH = 256
T5_END, T5_PAD = 1, 0
_MEAN_EPSILON = 1e-4


def t5_chunks(tokenizer: Any, text: str) -> list[tuple[list[int], list[float]]]:
    """Forge's `T5TextProcessingEngine.tokenize_line`: (tokens, multipliers) per chunk, each closed with the end token
    and padded to at least 256 tokens, then every chunk padded to the longest."""
    parsed = parse_prompt_attention(text)
    tokenized = tokenizer([str(piece) for piece, _ in parsed], truncation=False, add_special_tokens=False)["input_ids"]
    chunks: list[tuple[list[int], list[float]]] = []
    tokens: list[int] = []
    multipliers: list[float] = []

    def close() -> None:
        nonlocal tokens, multipliers
        tokens, multipliers = [*tokens, T5_END], [*multipliers, 1.0]
        missing = T5_MIN_LENGTH - len(tokens)
        if missing > 0:
            tokens, multipliers = tokens + [T5_PAD] * missing, multipliers + [1.0] * missing
        chunks.append((tokens, multipliers))
        tokens, multipliers = [], []

    for ids, (piece, weight) in zip(tokenized, parsed, strict=True):
        if piece == "BREAK" and weight == -1:
            close()
            continue
        tokens += [int(i) for i in ids]
        multipliers += [float(weight)] * len(ids)
    if tokens or not chunks:
        close()
    longest = max(len(t) for t, _ in chunks)
    return [(t + [T5_PAD] * (longest - len(t)), m + [1.0] * (longest - len(m))) for t, m in chunks]


class T5Conditioner:
    """Encodes prompts with T5 as Forge does (see `t5_chunks`), caching by text."""

    def __init__(self, tokenizer: Any, encoder: Any, device: Any) -> None:
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.device = device
        self._cache: dict[str, torch.Tensor] = {}

    def token_count(self, text: str) -> int:
        return sum(sum(1 for t in tokens if t != T5_PAD) for tokens, _ in t5_chunks(self.tokenizer, text))

    def encode(self, text: str) -> torch.Tensor:
        """(1, tokens, width) in float32."""
        if text not in self._cache:
            if len(self._cache) > 256:
                self._cache.clear()
            zs = []
            with torch.inference_mode():
                for tokens, multipliers in t5_chunks(self.tokenizer, text):
                    ids = torch.tensor([tokens], device=self.device)
                    z = self.encoder(input_ids=ids).last_hidden_state.float()
                    if any(m != 1.0 for m in multipliers):
                        weights = torch.tensor([multipliers], device=z.device, dtype=z.dtype).unsqueeze(-1)
                        original_mean = z.mean()
                        z = z * weights.expand(z.shape)
                        new_mean = z.mean()
                        if new_mean.abs() > _MEAN_EPSILON * z.abs().mean():
                            z = z * (original_mean / new_mean)
                    zs.append(z)
            self._cache[text] = torch.cat(zs, dim=1)
        return self._cache[text]


def pack(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents (B, C, H, W) -> (B, H/2 * W/2, C * 4) tokens and their (0, row, column) ids; odd sides are padded
    circularly first, as Forge does."""
    b, c, h, w = x.shape
    x = F.pad(x, (0, w % 2, 0, h % 2), mode="circular") if h % 2 or w % 2 else x
    rows, cols = x.shape[2] // 2, x.shape[3] // 2
    tokens = x.reshape(b, c, rows, 2, cols, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, rows * cols, c * 4)
    ids = torch.zeros(rows, cols, 3, device=x.device, dtype=x.dtype)
    ids[..., 1] += torch.arange(rows, device=x.device, dtype=x.dtype)[:, None]
    ids[..., 2] += torch.arange(cols, device=x.device, dtype=x.dtype)[None, :]
    return tokens, ids.reshape(rows * cols, 3)


def unpack(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The inverse of `pack`, cropped back to (height, width) latents."""
    b, _, d = tokens.shape
    rows, cols = (height + 1) // 2, (width + 1) // 2
    c = d // 4
    x = tokens.reshape(b, rows, cols, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, rows * 2, cols * 2)
    return x[:, :, :height, :width]


class FluxFamily:
    def __init__(self, transformer: Any, clip: Conditioner, t5: T5Conditioner) -> None:
        self.transformer = transformer
        self.clip = clip
        self.t5 = t5

    @property
    def distilled(self) -> bool:
        """A dev model (guidance-distilled): it takes the distilled CFG scale; schnell does not."""
        return bool(self.transformer.config.guidance_embeds)

    def encode_schedule(self, texts: list[str], clip_skip: int, state: str, *, negative: bool) -> list[TextCond]:
        pooled = self.clip.encode_batch(texts, 1, state).pooled
        assert pooled is not None
        return [TextCond(self.t5.encode(text), vector.float()) for text, vector in zip(texts, pooled, strict=True)]

    def unet_fn(self, width: int, height: int, *, guidance: float | None = None) -> UNetFn:
        transformer = self.transformer
        dtype: torch.dtype = transformer.easel_compute  # what it computes in (its linear layers may be stored in fp8)
        distilled = self.distilled

        def call(x: torch.Tensor, t: torch.Tensor, crossattn: torch.Tensor, vector: torch.Tensor | None) -> Any:
            assert vector is not None
            tokens, img_ids = pack(x)
            txt_ids = torch.zeros(crossattn.shape[1], 3, device=x.device, dtype=x.dtype)
            scale = None
            if distilled:
                scale = torch.full((x.shape[0],), 3.5 if guidance is None else guidance, device=x.device)
            out = transformer(
                hidden_states=tokens.to(dtype),
                encoder_hidden_states=crossattn.to(x.device, dtype),
                pooled_projections=vector.to(x.device, dtype),
                timestep=t.to(dtype),
                img_ids=img_ids,
                txt_ids=txt_ids,
                guidance=None if scale is None else scale.to(dtype),
                return_dict=False,
            )[0]
            return unpack(out.float(), x.shape[2], x.shape[3])

        return call

    def take_used_embeddings(self) -> Sequence[Embedding]:
        return []
