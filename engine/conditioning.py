"""Text conditioning the A1111 way (`modules/sd_hijack_clip.py`): emphasis weights, 75-token chunks with BREAK and
comma backtracking, textual-inversion embeddings, per-chunk CLIP encoding with clip skip, and "Original" emphasis
(scale, then restore the mean over the batch of a prompt's schedule texts). One `Conditioner` wraps one text
encoder: SD 1.x has one, SDXL two (`EncoderStyle` says how A1111 reads each).

Prompts longer than 75 tokens are never truncated: every chunk conditions the image (the UNet's cross-attention
takes any sequence length).
"""

from __future__ import annotations

import re
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


def tokenize_chunks(
    tokenizer: Any, text: str, embeddings: TokenLookup | None = None, *, open_clip: bool = False
) -> tuple[list[PromptChunk], int]:
    """A1111's `tokenize_line`: chunks of 75 tokens framed with BOS/EOS, and the prompt's token count.

    An embedding's name found in the tokens becomes one placeholder per vector (each with the piece's weight),
    never split across chunks; a refused embedding file named in the text raises InvalidParamsError.
    """
    parsed = parse_prompt_attention(text)
    pieces = [clean_text(str(piece), open_clip=open_clip) for piece, _ in parsed]
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


def _substitute(rows: list[list[tuple[int, Embedding]]], key: str) -> Callable[[Any, Any, torch.Tensor], torch.Tensor]:
    """A forward hook for the token-embedding layer: A1111's `EmbeddingsWithFixes`, writing each row's embeddings'
    vectors (the part for this encoder, `key`) over their placeholders; position embeddings are added afterwards,
    as for any token."""

    def hook(_module: Any, _args: Any, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        for row, fixes in enumerate(rows):
            for offset, embedding in fixes:
                vectors = embedding.part(key).to(output.device, output.dtype)
                count = min(output.shape[1] - offset - 1, vectors.shape[0])
                output[row, offset + 1 : offset + 1 + count] = vectors[:count]
        return output

    return hook


@dataclass(frozen=True)
class EncoderStyle:
    """How A1111 wraps one text encoder (`sd_hijack_clip.py`, `sd_hijack_open_clip.py`).

    SD 1.x's CLIP-L: the last layer, or with clip skip N `hidden_states[-N]` through the final layer norm. SDXL's two
    encoders: the penultimate layer without a final norm, whatever the clip skip (A1111's default); OpenCLIP-G pads
    with token 0 after the first end token and also gives the pooled, projected vector.
    """

    penultimate: bool = False
    pad_after_end: int | None = None
    pooled: bool = False
    embedding_key: str = ""  # which tensor of an SDXL embedding file this encoder takes ("" for SD 1.x files)
    open_clip: bool = False  # cleans text as open_clip's tokenizer does (OpenCLIP-G), else as CLIP-L's


SD1_STYLE = EncoderStyle()
SDXL_CLIP_L = EncoderStyle(penultimate=True, embedding_key="clip_l")
SDXL_CLIP_G = EncoderStyle(penultimate=True, pad_after_end=0, pooled=True, embedding_key="clip_g", open_clip=True)
# Flux's CLIP-L gives only its pooled output: the end token's final-layer-normed state, unprojected (Forge's
# `return_pooled=True, text_projection=False, final_layer_norm=True`).
FLUX_CLIP_L = EncoderStyle(pooled=True, embedding_key="clip_l")


def clean_text(text: str, *, open_clip: bool = False) -> str:
    """A prompt piece cleaned as A1111's tokenizers clean it before splitting it. CLIP-L (transformers 4.30's
    CLIPTokenizer, with ftfy installed as it always is in A1111): `ftfy.fix_text` (full-width punctuation, curly
    quotes, HTML entities when the text has no `<`...), whitespace collapsed. OpenCLIP-G (`open_clip`'s
    `basic_clean`): the same, then HTML entities unescaped twice, whatever the text."""
    import html

    import ftfy

    fixed = ftfy.fix_text(text)
    if open_clip:
        fixed = html.unescape(html.unescape(fixed)).strip()
    return re.sub(r"\s+", " ", fixed).strip()


@dataclass(frozen=True)
class Encoded:
    """A batch of texts encoded together: per text, its (1, 77*k, C) tensor (every text padded to the same k with
    empty chunks) and, for an encoder that pools, its pooled vector (1, D) from its first chunk."""

    crossattn: list[torch.Tensor]
    pooled: list[torch.Tensor] | None
    used: tuple[Embedding, ...]


def empty_chunk(tokenizer: Any) -> PromptChunk:
    """A1111's `empty_chunk`: BOS and 76 end tokens, every multiplier 1."""
    bos, eos = int(tokenizer.bos_token_id), int(tokenizer.eos_token_id)
    return PromptChunk([bos] + [eos] * (CHUNK_LENGTH + 1), [1.0] * (CHUNK_LENGTH + 2))


def encode_batch(
    tokenizer: Any,
    text_encoder: Any,
    batch: list[list[PromptChunk]],
    clip_skip: int,
    device: Any,
    style: EncoderStyle = SD1_STYLE,
) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """A1111's `FrozenCLIPEmbedderWithCustomWordsBase.forward` for a batch of texts' chunks (a prompt's schedule
    texts are one batch): chunk i of every text is encoded and emphasised together, a text with fewer chunks getting
    empty ones; "Original" emphasis restores the mean over the whole batch's chunk. Rows are run through the encoder
    one at a time (the same numbers as batched, up to rounding), then weighed as one batch."""
    chunk_count = max(len(chunks) for chunks in batch)
    id_end = int(tokenizer.eos_token_id)
    token_embedding = text_encoder.get_input_embeddings()
    zs: list[torch.Tensor] = []
    pooled: list[torch.Tensor] | None = None
    for i in range(chunk_count):
        rows = [chunks[i] if i < len(chunks) else empty_chunk(tokenizer) for chunks in batch]
        outputs, pools = [], []
        for row in rows:
            tokens = torch.tensor([row.tokens], device=device)
            if style.pad_after_end is not None:
                tokens[0, row.tokens.index(id_end) + 1 :] = style.pad_after_end
            hook = _substitute([row.fixes], style.embedding_key) if row.fixes else None
            handle = token_embedding.register_forward_hook(hook) if hook is not None else None
            try:
                z, pool = _run_encoder(text_encoder, tokens, clip_skip, style)
            finally:
                if handle is not None:
                    handle.remove()
            outputs.append(z)
            pools.append(pool)
        z = torch.cat(outputs)
        if i == 0 and style.pooled:
            pooled = [p for p in pools if p is not None]
        if any(m != 1.0 for row in rows for m in row.multipliers):
            # With every multiplier 1.0, A1111's rescale is `z * (m / m)`: z itself, except that an exactly-zero
            # mean gives NaN. Skipping it is bit-identical everywhere else.
            multipliers = torch.tensor([row.multipliers for row in rows], device=device, dtype=z.dtype)
            original_mean = z.mean()
            z = z * multipliers.unsqueeze(-1).expand(z.shape)
            new_mean = z.mean()
            # A text encoder whose final layer norm has no bias (builtin:tiny's random init) has a mean of ~0, and
            # the ratio would be rounding noise over rounding noise (inf, NaN). Real CLIP models are far from it.
            if new_mean.abs() > _MEAN_EPSILON * z.abs().mean():
                z = z * (original_mean / new_mean)
        zs.append(z)
    crossattn = torch.hstack(zs)
    return [crossattn[b : b + 1] for b in range(len(batch))], pooled


def _run_encoder(
    text_encoder: Any, tokens: torch.Tensor, clip_skip: int, style: EncoderStyle
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if style.penultimate:
        out = text_encoder(input_ids=tokens, output_hidden_states=True)
        pool = out.text_embeds if style.pooled else None
        return out.hidden_states[-2], pool
    if style.pooled:  # Flux's CLIP-L: the pooled vector (clip skip changes only the sequence, which goes unused)
        out = text_encoder(input_ids=tokens)
        return out.last_hidden_state, out.pooler_output
    if clip_skip > 1:
        out = text_encoder(input_ids=tokens, output_hidden_states=True)
        # transformers 5 flattened CLIPTextModel (no `.text_model`); 4.x nests it.
        final_layer_norm = getattr(text_encoder, "text_model", text_encoder).final_layer_norm
        layers = len(out.hidden_states) - 1
        if clip_skip > layers:
            raise InvalidParamsError(
                f"Clip skip {clip_skip} is more than this model's text encoder has layers ({layers}): "
                f"use 1 to {layers}."
            )
        return final_layer_norm(out.hidden_states[-clip_skip]), None
    return text_encoder(input_ids=tokens)[0], None


class Conditioner:
    """Encodes prompts with one text encoder, caching results for the active LoRA/clip-skip/embeddings state.

    It also remembers which embeddings the texts it encoded used (`take_used`), for the `TI hashes` infotext key.
    `embedding_width` is the width an embedding file must have to be used with this model (SDXL's is both
    encoders' together, as A1111 checks it); by default this encoder's own.
    """

    def __init__(
        self,
        tokenizer: Any,
        text_encoder: Any,
        device: Any,
        embeddings: EmbeddingDB | None = None,
        *,
        style: EncoderStyle = SD1_STYLE,
        embedding_width: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.device = device
        self.embeddings = embeddings
        self.style = style
        self.embedding_width = embedding_width or int(text_encoder.get_input_embeddings().embedding_dim)
        self._cache: dict[tuple[tuple[str, ...], int, str, int], Encoded] = {}
        self._used: dict[str, Embedding] = {}

    def _lookup(self) -> tuple[TokenLookup | None, int]:
        if self.embeddings is None:
            return None, 0
        return self.embeddings.lookup(self.tokenizer, self.embedding_width), self.embeddings.version

    def encode_batch(self, texts: list[str], clip_skip: int = 1, state: str = "") -> Encoded:
        """Encode a prompt's schedule texts as one batch, as A1111 does (see `encode_batch`)."""
        lookup, version = self._lookup()
        key = (tuple(texts), clip_skip, state, version)
        if key not in self._cache:
            if len(self._cache) > 256:
                self._cache.clear()
            tokenized = {
                text: tokenize_chunks(self.tokenizer, text, lookup, open_clip=self.style.open_clip)[0]
                for text in dict.fromkeys(texts)
            }
            batch = [tokenized[text] for text in texts]
            with torch.inference_mode():
                crossattn, pooled = encode_batch(
                    self.tokenizer, self.text_encoder, batch, clip_skip, self.device, self.style
                )
            used = tuple({emb.name: emb for chunks in batch for chunk in chunks for _, emb in chunk.fixes}.values())
            self._cache[key] = Encoded(crossattn, pooled, used)
        encoded = self._cache[key]
        for embedding in encoded.used:
            self._used.setdefault(embedding.name, embedding)
        return encoded

    def encode(self, text: str, clip_skip: int = 1, state: str = "") -> torch.Tensor:
        """One text alone: (1, 77*k, C)."""
        return self.encode_batch([text], clip_skip, state).crossattn[0]

    def embeddings_used(self, text: str) -> list[Embedding]:
        """The embeddings `text` uses, in order of first use (raises for a refused one, as encoding would)."""
        lookup, _ = self._lookup()
        return list(_used_in(tokenize_chunks(self.tokenizer, text, lookup, open_clip=self.style.open_clip)[0]))

    def take_used(self) -> list[Embedding]:
        """Every embedding used by the texts encoded since the last call, in order of first use; then forget."""
        used, self._used = list(self._used.values()), {}
        return used

    def token_count(self, text: str) -> int:
        lookup, _ = self._lookup()
        return tokenize_chunks(self.tokenizer, text, lookup, open_clip=self.style.open_clip)[1]


def _used_in(chunks: list[PromptChunk]) -> tuple[Embedding, ...]:
    return tuple({emb.name: emb for chunk in chunks for _, emb in chunk.fixes}.values())
