"""Text conditioning the A1111 way (`modules/sd_hijack_clip.py`): emphasis weights, 75-token chunks with BREAK and
comma backtracking, textual-inversion embeddings, per-chunk CLIP encoding with clip skip, and "Original" emphasis
(scale, then restore the mean).

Prompts longer than 75 tokens are never truncated: every chunk conditions the image (the UNet's cross-attention
takes any sequence length).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from engine.embeddings import Embedding, EmbeddingDB, RefusedEmbedding, TokenLookup
from engine.errors import InvalidParamsError
from engine.prompts.attention import parse_prompt_attention

CHUNK_LENGTH = 75
COMMA_BACKTRACK = 20  # A1111's comma_padding_backtrack default
_MEAN_EPSILON = 1e-4  # below this fraction of the mean magnitude, "restore the mean" is numerically meaningless
PLACEHOLDER_TOKEN = 0  # what A1111 puts where an embedding's vectors go; the vectors replace its embedding


@dataclass
class PromptChunk:
    tokens: list[int] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)
    # (offset in `tokens` before the BOS is framed on, embedding): A1111's PromptChunkFix
    fixes: list[tuple[int, Embedding]] = field(default_factory=list)


def tokenize_chunks(tokenizer: Any, text: str, embeddings: TokenLookup | None = None) -> tuple[list[PromptChunk], int]:
    """A1111's `tokenize_line`: chunks of 75 tokens framed with BOS/EOS, and the prompt's token count.

    An embedding's name found in the tokens becomes one placeholder per vector (each with the piece's weight),
    never split across chunks; a refused embedding file named in the text raises InvalidParamsError.
    """
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
        i = 0
        while i < len(tokens):
            token = int(tokens[i])
            found = embeddings.find(tokens, i) if embeddings is not None else None
            if token == comma_token:
                last_comma = len(chunk.tokens)
            elif (
                len(chunk.tokens) == CHUNK_LENGTH
                and last_comma != -1
                and len(chunk.tokens) - last_comma <= COMMA_BACKTRACK
            ):
                # Move the words after the last comma to the next chunk rather than split a phrase.
                cut = last_comma + 1
                moved = PromptChunk(chunk.tokens[cut:], chunk.multipliers[cut:])
                # A1111 leaves the embeddings among the moved words behind (their vectors land on the old chunk's
                # padding and the new chunk gets bare placeholders); they move with their words here.
                moved.fixes = [(offset - cut, emb) for offset, emb in chunk.fixes if offset >= cut]
                chunk.fixes = [(offset, emb) for offset, emb in chunk.fixes if offset < cut]
                chunk.tokens, chunk.multipliers = chunk.tokens[:cut], chunk.multipliers[:cut]
                next_chunk()
                chunk = moved
            if len(chunk.tokens) == CHUNK_LENGTH:
                next_chunk()
            if found is None:
                chunk.tokens.append(token)
                chunk.multipliers.append(float(weight))
                i += 1
                continue
            embedding, name_length = found
            if isinstance(embedding, RefusedEmbedding):
                raise InvalidParamsError(
                    f"The prompt names the embedding {embedding.name!r} ({embedding.path.name}), which cannot be "
                    f"used: {embedding.reason}."
                )
            if len(chunk.tokens) + embedding.count > CHUNK_LENGTH:
                next_chunk()  # an embedding never straddles two chunks
            chunk.fixes.append((len(chunk.tokens), embedding))
            chunk.tokens += [PLACEHOLDER_TOKEN] * embedding.count
            chunk.multipliers += [float(weight)] * embedding.count
            i += name_length
    if chunk.tokens or not chunks:
        next_chunk(is_last=True)
    return chunks, token_count


def _substitute(fixes: list[tuple[int, Embedding]]) -> Callable[[Any, Any, torch.Tensor], torch.Tensor]:
    """A forward hook for the token-embedding layer: A1111's `EmbeddingsWithFixes`, writing each embedding's
    vectors over its placeholders (position embeddings are added afterwards, as for any token)."""

    def hook(_module: Any, _args: Any, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        for offset, embedding in fixes:
            vectors = embedding.vectors.to(output.device, output.dtype)
            count = min(output.shape[1] - offset - 1, vectors.shape[0])
            output[:, offset + 1 : offset + 1 + count] = vectors[:count]
        return output

    return hook


def encode_chunks(text_encoder: Any, chunks: list[PromptChunk], clip_skip: int, device: Any) -> torch.Tensor:
    """Encode each chunk separately, apply the emphasis "Original" way, and concatenate: (1, 77*k, dim)."""
    outputs = []
    token_embedding = text_encoder.get_input_embeddings()
    for chunk in chunks:
        tokens = torch.tensor([chunk.tokens], device=device)
        handle = token_embedding.register_forward_hook(_substitute(chunk.fixes)) if chunk.fixes else None
        try:
            if clip_skip > 1:
                out = text_encoder(input_ids=tokens, output_hidden_states=True)
                # transformers 5 flattened CLIPTextModel (no `.text_model`); 4.x nests it.
                final_layer_norm = getattr(text_encoder, "text_model", text_encoder).final_layer_norm
                z = final_layer_norm(out.hidden_states[-clip_skip])
            else:
                z = text_encoder(input_ids=tokens)[0]
        finally:
            if handle is not None:
                handle.remove()
        if any(m != 1.0 for m in chunk.multipliers):
            # With every multiplier 1.0, A1111's rescale is `z * (m / m)`: z itself, except that an exactly-zero
            # mean gives NaN. Skipping it is bit-identical everywhere else.
            multipliers = torch.tensor([chunk.multipliers], device=device, dtype=z.dtype)
            original_mean = z.mean()
            z = z * multipliers.unsqueeze(-1).expand(z.shape)
            new_mean = z.mean()
            # A text encoder whose final layer norm has no bias (builtin:tiny's random init) has a mean of ~0, and
            # the ratio would be rounding noise over rounding noise (inf, NaN). Real CLIP models are far from it.
            if new_mean.abs() > _MEAN_EPSILON * z.abs().mean():
                z = z * (original_mean / new_mean)
        outputs.append(z)
    return torch.hstack(outputs)


class Conditioner:
    """Encodes prompts for one loaded model, caching results for the active LoRA/clip-skip/embeddings state.

    It also remembers which embeddings the texts it encoded used (`take_used`), for the `TI hashes` infotext key.
    """

    def __init__(self, tokenizer: Any, text_encoder: Any, device: Any, embeddings: EmbeddingDB | None = None) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.device = device
        self.embeddings = embeddings
        self._cache: dict[tuple[str, int, str, int], tuple[torch.Tensor, tuple[Embedding, ...]]] = {}
        self._used: dict[str, Embedding] = {}

    def _lookup(self) -> tuple[TokenLookup | None, int]:
        if self.embeddings is None:
            return None, 0
        width = int(self.text_encoder.get_input_embeddings().embedding_dim)
        lookup = self.embeddings.lookup(self.tokenizer, width)
        return lookup, self.embeddings.version

    def encode(self, text: str, clip_skip: int = 1, state: str = "") -> torch.Tensor:
        lookup, version = self._lookup()
        key = (text, clip_skip, state, version)
        if key not in self._cache:
            if len(self._cache) > 256:
                self._cache.clear()
            chunks, _ = tokenize_chunks(self.tokenizer, text, lookup)
            with torch.inference_mode():
                encoded = encode_chunks(self.text_encoder, chunks, clip_skip, self.device)
            self._cache[key] = (encoded, _used_in(chunks))
        encoded, used = self._cache[key]
        for embedding in used:
            self._used.setdefault(embedding.name, embedding)
        return encoded

    def embeddings_used(self, text: str) -> list[Embedding]:
        """The embeddings `text` uses, in order of first use (raises for a refused one, as encoding would)."""
        lookup, _ = self._lookup()
        return list(_used_in(tokenize_chunks(self.tokenizer, text, lookup)[0]))

    def take_used(self) -> list[Embedding]:
        """Every embedding used by the texts encoded since the last call, in order of first use; then forget."""
        used, self._used = list(self._used.values()), {}
        return used

    def token_count(self, text: str) -> int:
        lookup, _ = self._lookup()
        return tokenize_chunks(self.tokenizer, text, lookup)[1]


def _used_in(chunks: list[PromptChunk]) -> tuple[Embedding, ...]:
    return tuple({emb.name: emb for chunk in chunks for _, emb in chunk.fixes}.values())
