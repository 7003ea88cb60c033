"""SOURCE: AUTOMATIC1111 stable-diffusion-webui v1.10.1 behaviour for SDXL text conditioning: modules/sd_hijack_clip.py
(FrozenCLIPEmbedderWithCustomWordsBase: tokenize_line, process_texts, forward, process_tokens, empty_chunk;
FrozenCLIPEmbedderForSDXLWithCustomWords.encode_with_transformers), modules/sd_hijack_open_clip.py
(FrozenOpenCLIPEmbedder2WithCustomWords), modules/sd_emphasis.py (EmphasisOriginal), modules/sd_models_xl.py
(get_learned_conditioning: sizes, force_zero_negative_prompt), and Stability-AI generative-models
sgm/modules/encoders/modules.py (GeneralConditioner, FrozenOpenCLIPEmbedder2.encode_with_transformer /
text_transformer_forward / pool, ConcatTimestepEmbedderND) with sgm/modules/diffusionmodules/util.timestep_embedding.

Test-only reference, written for Easel from those files' logic; it is not A1111's or sgm's source text. It runs
OpenCLIP-G the way open_clip does, on the checkpoint's own `conditioner.embedders.1.model.*` tensors (fused in_proj
attention, `x @ text_projection`), and CLIP-L through transformers as A1111 does. Two simplifications: the HF
tokenizer stands in for open_clip's (they agree but on prompts mixing `<` with HTML entities), and the prompt's
emphasis parse is Easel's port (tested against A1111's own on its own).
Upstream style is kept on purpose so it can be read side by side with A1111.
"""

# ruff: noqa
# mypy: ignore-errors

import math

import torch

from engine.prompts.attention import parse_prompt_attention

CHUNK_LENGTH = 75
COMMA_PADDING_BACKTRACK = 20


class PromptChunk:
    def __init__(self):
        self.tokens = []
        self.multipliers = []
        self.fixes = []


class CustomWordsEncoder:
    """FrozenCLIPEmbedderWithCustomWordsBase with one encoder's `encode_with_transformers` plugged in."""

    def __init__(self, tokenizer, encode_with_transformers, id_pad, embeddings=None, embedding_key=None):
        self.tokenizer = tokenizer
        self.encode_with_transformers = encode_with_transformers
        self.id_start = tokenizer.bos_token_id
        self.id_end = tokenizer.eos_token_id
        self.id_pad = id_pad
        self.comma_token = tokenizer.get_vocab().get(",</w>", None)
        self.embeddings = embeddings or {}  # name -> {"clip_l": tensor, "clip_g": tensor}
        self.embedding_key = embedding_key
        self.fixes = None

    def empty_chunk(self):
        chunk = PromptChunk()
        chunk.tokens = [self.id_start] + [self.id_end] * (CHUNK_LENGTH + 1)
        chunk.multipliers = [1.0] * (CHUNK_LENGTH + 2)
        return chunk

    def tokenize(self, texts):
        return self.tokenizer(texts, truncation=False, add_special_tokens=False)["input_ids"]

    def find_embedding_at_position(self, tokens, offset):
        for name, vec in self.embeddings.items():
            ids = self.tokenize([name])[0]
            if tokens[offset : offset + len(ids)] == ids:
                return (name, vec), len(ids)
        return None, None

    def tokenize_line(self, line):
        parsed = parse_prompt_attention(line)
        tokenized = self.tokenize([text for text, _ in parsed])
        chunks = []
        chunk = PromptChunk()
        token_count = 0
        last_comma = -1

        def next_chunk(is_last=False):
            nonlocal token_count, last_comma, chunk
            if is_last:
                token_count += len(chunk.tokens)
            else:
                token_count += CHUNK_LENGTH
            to_add = CHUNK_LENGTH - len(chunk.tokens)
            if to_add > 0:
                chunk.tokens += [self.id_end] * to_add
                chunk.multipliers += [1.0] * to_add
            chunk.tokens = [self.id_start] + chunk.tokens + [self.id_end]
            chunk.multipliers = [1.0] + chunk.multipliers + [1.0]
            last_comma = -1
            chunks.append(chunk)
            chunk = PromptChunk()

        for tokens, (text, weight) in zip(tokenized, parsed):
            if text == "BREAK" and weight == -1:
                next_chunk()
                continue
            position = 0
            while position < len(tokens):
                token = tokens[position]
                if token == self.comma_token:
                    last_comma = len(chunk.tokens)
                elif (
                    COMMA_PADDING_BACKTRACK != 0
                    and len(chunk.tokens) == CHUNK_LENGTH
                    and last_comma != -1
                    and len(chunk.tokens) - last_comma <= COMMA_PADDING_BACKTRACK
                ):
                    break_location = last_comma + 1
                    reloc_tokens = chunk.tokens[break_location:]
                    reloc_mults = chunk.multipliers[break_location:]
                    chunk.tokens = chunk.tokens[:break_location]
                    chunk.multipliers = chunk.multipliers[:break_location]
                    next_chunk()
                    chunk.tokens = reloc_tokens
                    chunk.multipliers = reloc_mults
                if len(chunk.tokens) == CHUNK_LENGTH:
                    next_chunk()
                embedding, embedding_length_in_tokens = self.find_embedding_at_position(tokens, position)
                if embedding is None:
                    chunk.tokens.append(token)
                    chunk.multipliers.append(weight)
                    position += 1
                    continue
                emb_len = int(embedding[1][self.embedding_key].shape[0])
                if len(chunk.tokens) + emb_len > CHUNK_LENGTH:
                    next_chunk()
                chunk.fixes.append((len(chunk.tokens), embedding))
                chunk.tokens += [0] * emb_len
                chunk.multipliers += [weight] * emb_len
                position += embedding_length_in_tokens
        if chunk.tokens or not chunks:
            next_chunk(is_last=True)
        return chunks, token_count

    def process_texts(self, texts):
        cache = {}
        batch_chunks = []
        for line in texts:
            if line not in cache:
                cache[line] = self.tokenize_line(line)[0]
            batch_chunks.append(cache[line])
        return batch_chunks

    def forward(self, texts):
        batch_chunks = self.process_texts(texts)
        chunk_count = max([len(x) for x in batch_chunks])
        zs = []
        pooled = None
        for i in range(chunk_count):
            batch_chunk = [chunks[i] if i < len(chunks) else self.empty_chunk() for chunks in batch_chunks]
            tokens = [x.tokens for x in batch_chunk]
            multipliers = [x.multipliers for x in batch_chunk]
            self.fixes = [x.fixes for x in batch_chunk]
            z, p = self.process_tokens(tokens, multipliers)
            zs.append(z)
            if i == 0:
                pooled = p
        return torch.hstack(zs), pooled

    def process_tokens(self, remade_batch_tokens, batch_multipliers):
        tokens = torch.asarray(remade_batch_tokens)
        if self.id_end != self.id_pad:
            for batch_pos in range(len(remade_batch_tokens)):
                index = remade_batch_tokens[batch_pos].index(self.id_end)
                tokens[batch_pos, index + 1 : tokens.shape[1]] = self.id_pad
        z, pooled = self.encode_with_transformers(tokens, self.fixes, self.embedding_key)
        # EmphasisOriginal.after_transformers
        multipliers = torch.asarray(batch_multipliers)
        original_mean = z.mean()
        z = z * multipliers.reshape(multipliers.shape + (1,)).expand(z.shape)
        new_mean = z.mean()
        z = z * (original_mean / new_mean)
        return z, pooled


def apply_fixes(embedded, fixes, key):
    """sd_hijack.EmbeddingsWithFixes: each row's embedding vectors over its placeholders."""
    out = []
    for fixes_row, tensor in zip(fixes, embedded):
        for offset, (_, vec) in fixes_row:
            emb = vec[key].to(tensor)
            emb_len = min(tensor.shape[0] - offset - 1, emb.shape[0])
            tensor = torch.cat([tensor[0 : offset + 1], emb[0:emb_len], tensor[offset + 1 + emb_len :]])
        out.append(tensor)
    return torch.stack(out)


def clip_l_encoder(text_encoder):
    """FrozenCLIPEmbedderForSDXLWithCustomWords: layer "hidden", layer_idx 11 of 12 (the penultimate), no norm."""
    layer_idx = text_encoder.config.num_hidden_layers - 1
    token_embedding = text_encoder.get_input_embeddings()

    def encode(tokens, fixes, key):
        handle = token_embedding.register_forward_hook(lambda m, a, out: apply_fixes(out, fixes, key))
        try:
            outputs = text_encoder(input_ids=tokens, output_hidden_states=True)
        finally:
            handle.remove()
        return outputs.hidden_states[layer_idx], None

    return encode


def open_clip_g_encoder(state, heads, prefix="conditioner.embedders.1.model."):
    """sgm FrozenOpenCLIPEmbedder2 (layer "penultimate", legacy False) run on OpenCLIP-layout tensors."""
    get = lambda name: state[prefix + name].float()
    width = get("token_embedding.weight").shape[1]
    layers = len({k[len(prefix) :].split(".")[2] for k in state if k.startswith(prefix + "transformer.resblocks.")})

    def resblock(x, i, attn_mask):
        p = f"transformer.resblocks.{i}."
        h = torch.nn.functional.layer_norm(x, (width,), get(p + "ln_1.weight"), get(p + "ln_1.bias"))
        attn, _ = torch.nn.functional.multi_head_attention_forward(
            h,
            h,
            h,
            width,
            heads,
            get(p + "attn.in_proj_weight"),
            get(p + "attn.in_proj_bias"),
            None,
            None,
            False,
            0.0,
            get(p + "attn.out_proj.weight"),
            get(p + "attn.out_proj.bias"),
            need_weights=False,
            attn_mask=attn_mask,
        )
        x = x + attn
        h = torch.nn.functional.layer_norm(x, (width,), get(p + "ln_2.weight"), get(p + "ln_2.bias"))
        h = torch.nn.functional.linear(h, get(p + "mlp.c_fc.weight"), get(p + "mlp.c_fc.bias"))
        h = torch.nn.functional.gelu(h)
        h = torch.nn.functional.linear(h, get(p + "mlp.c_proj.weight"), get(p + "mlp.c_proj.bias"))
        return x + h

    def encode(tokens, fixes, key):
        x = torch.nn.functional.embedding(tokens, get("token_embedding.weight"))
        x = apply_fixes(x, fixes, key)
        x = x + get("positional_embedding")
        x = x.permute(1, 0, 2)  # NLD -> LND
        n = tokens.shape[1]
        attn_mask = torch.empty(n, n).fill_(float("-inf")).triu_(1)
        penultimate = None
        for i in range(layers):
            if i == layers - 1:
                penultimate = x.permute(1, 0, 2)
            x = resblock(x, i, attn_mask)
        last = x.permute(1, 0, 2)
        o = torch.nn.functional.layer_norm(last, (width,), get("ln_final.weight"), get("ln_final.bias"))
        pooled = o[torch.arange(o.shape[0]), tokens.argmax(dim=-1)] @ get("text_projection")
        return penultimate, pooled

    return encode


def timestep_embedding(timesteps, dim, max_period=10000):
    """sgm.modules.diffusionmodules.util.timestep_embedding (cos first)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half)
    args = timesteps[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class SDXLConditioner:
    """sgm GeneralConditioner as A1111's get_learned_conditioning drives it: crossattn (B, 77k, L+G) and the vector
    y (B, pooled + 6 * size_dim)."""

    def __init__(self, clip_l, clip_g, size_dim):
        self.clip_l = clip_l
        self.clip_g = clip_g
        self.size_dim = size_dim

    def __call__(self, texts, width, height, is_negative_prompt=False, dtype=torch.float32):
        z_l, _ = self.clip_l.forward(texts)
        z_g, pooled = self.clip_g.forward(texts)
        crossattn = torch.cat([z_l, z_g], dim=2)
        force_zero = is_negative_prompt and all(x == "" for x in texts)
        if force_zero:
            crossattn = torch.zeros_like(crossattn)
            pooled = torch.zeros_like(pooled)
        sizes = []
        for values in ([height, width], [0, 0], [height, width]):  # original, crop (top, left), target
            t = torch.tensor(values, dtype=dtype).repeat(len(texts), 1)
            # ConcatTimestepEmbedderND: each entry embedded, then concatenated
            emb = timestep_embedding(t.flatten(), self.size_dim).reshape(len(texts), -1)
            sizes.append(emb)
        return crossattn, torch.cat([pooled, *sizes], dim=1)
