"""Text conditioning the A1111 way (`modules/sd_hijack_clip.py`): emphasis weights, 75-token chunks with BREAK and
comma backtracking, per-chunk CLIP encoding with clip skip, and "Original" emphasis (scale, then restore the mean).

Prompts longer than 75 tokens are never truncated: every chunk conditions the image (the UNet's cross-attention
takes any sequence length).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from engine.prompts.attention import parse_prompt_attention

CHUNK_LENGTH = 75
COMMA_BACKTRACK = 20  # A1111's comma_padding_backtrack default


@dataclass
class PromptChunk:
    tokens: list[int] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)


def tokenize_chunks(tokenizer: Any, text: str) -> tuple[list[PromptChunk], int]:
    """A1111's `tokenize_line`: chunks of 75 tokens framed with BOS/EOS, and the prompt's token count."""
    parsed = parse_prompt_attention(text)
    pieces = [str(piece) for piece, _ in parsed]
    tokenized = tokenizer(pieces, truncation=False, add_special_tokens=False)["input_ids"]
    id_start, id_end = int(tokenizer.bos_token_id), int(tokenizer.eos_token_id)
    id_pad = id_end  # SD 1.x pads with the end token
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    comma_token = comma if comma != tokenizer.unk_token_id else None

    chunks: list[PromptChunk] = []
    chunk = PromptChunk()
    token_count = 0
    last_comma = -1

    def next_chunk(is_last: bool = False) -> None:
        nonlocal token_count, last_comma, chunk
        token_count += len(chunk.tokens) if is_last else CHUNK_LENGTH
        to_add = CHUNK_LENGTH - len(chunk.tokens)
        if to_add > 0:
            chunk.tokens += [id_pad] * to_add
            chunk.multipliers += [1.0] * to_add
        chunk.tokens = [id_start, *chunk.tokens, id_end]
        chunk.multipliers = [1.0, *chunk.multipliers, 1.0]
        last_comma = -1
        chunks.append(chunk)
        chunk = PromptChunk()

    for tokens, (piece, weight) in zip(tokenized, parsed, strict=True):
        if piece == "BREAK" and weight == -1:
            next_chunk()
            continue
        for token in tokens:
            if token == comma_token:
                last_comma = len(chunk.tokens)
            elif (
                len(chunk.tokens) == CHUNK_LENGTH
                and last_comma != -1
                and len(chunk.tokens) - last_comma <= COMMA_BACKTRACK
            ):
                # Move the words after the last comma to the next chunk rather than split a phrase.
                cut = last_comma + 1
                moved_tokens, moved_mults = chunk.tokens[cut:], chunk.multipliers[cut:]
                chunk.tokens, chunk.multipliers = chunk.tokens[:cut], chunk.multipliers[:cut]
                next_chunk()
                chunk.tokens, chunk.multipliers = moved_tokens, moved_mults
            if len(chunk.tokens) == CHUNK_LENGTH:
                next_chunk()
            chunk.tokens.append(int(token))
            chunk.multipliers.append(float(weight))
    if chunk.tokens or not chunks:
        next_chunk(is_last=True)
    return chunks, token_count


def encode_chunks(text_encoder: Any, chunks: list[PromptChunk], clip_skip: int, device: Any) -> torch.Tensor:
    """Encode each chunk separately, apply the emphasis "Original" way, and concatenate: (1, 77*k, dim)."""
    outputs = []
    for chunk in chunks:
        tokens = torch.tensor([chunk.tokens], device=device)
        if clip_skip > 1:
            out = text_encoder(input_ids=tokens, output_hidden_states=True)
            # transformers 5 flattened CLIPTextModel (no `.text_model`); 4.x nests it.
            z = getattr(text_encoder, "text_model", text_encoder).final_layer_norm(out.hidden_states[-clip_skip])
        else:
            z = text_encoder(input_ids=tokens)[0]
        multipliers = torch.tensor([chunk.multipliers], device=device, dtype=z.dtype)
        original_mean = z.mean()
        z = z * multipliers.unsqueeze(-1).expand(z.shape)
        new_mean = z.mean()
        z = z * (original_mean / new_mean)
        outputs.append(z)
    return torch.hstack(outputs)


class Conditioner:
    """Encodes prompts for one loaded model, caching results for the active LoRA/clip-skip state."""

    def __init__(self, tokenizer: Any, text_encoder: Any, device: Any) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.device = device
        self._cache: dict[tuple[str, int, str], torch.Tensor] = {}

    def encode(self, text: str, clip_skip: int = 1, state: str = "") -> torch.Tensor:
        key = (text, clip_skip, state)
        if key not in self._cache:
            if len(self._cache) > 256:
                self._cache.clear()
            chunks, _ = tokenize_chunks(self.tokenizer, text)
            with torch.inference_mode():
                self._cache[key] = encode_chunks(self.text_encoder, chunks, clip_skip, self.device)
        return self._cache[key]

    def token_count(self, text: str) -> int:
        return tokenize_chunks(self.tokenizer, text)[1]
