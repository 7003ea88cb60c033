"""SOURCE: lllyasviel/stable-diffusion-webui-forge @ dfdcbab6 (2025-06-26): `backend/modules/k_prediction.py`
(`PredictionFlux` with diffusers' `calculate_shift` and `FlowMatchEulerDiscreteScheduler.time_shift` as Forge's pinned
diffusers defines it), `modules/sd_schedulers.py` (`simple_scheduler`), `backend/text_processing/t5_engine.py`
(`T5TextProcessingEngine.tokenize_line` and `__call__`'s padding), `backend/text_processing/emphasis.py`
(`EmphasisOriginal`) and `modules/infotext_utils.py` (the civitai Flux fix-up in `parse_generation_parameters`).

Test-only reference, written for Easel from those files' logic: the prompt parser is A1111's (Forge calls the same
`parse_prompt_attention`, which Easel's `engine.prompts.attention` ports), the tokenizer is passed in, there is no
module state. Upstream style is kept on purpose so it can be read side by side with Forge.
"""

# ruff: noqa
# mypy: ignore-errors

import math

import torch


def calculate_shift(image_seq_len, base_seq_len=256, max_seq_len=4096, base_shift=0.5, max_shift=1.16):
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    b = base_shift - m * base_seq_len
    mu = image_seq_len * m + b
    return mu


def time_shift(mu, sigma, t):
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** sigma)


class PredictionFlux:
    def __init__(
        self,
        seq_len=4096,
        base_seq_len=256,
        max_seq_len=4096,
        base_shift=0.5,
        max_shift=1.15,
        pseudo_timestep_range=10000,
        mu=None,
    ):
        if mu is None:
            mu = calculate_shift(
                image_seq_len=seq_len,
                base_seq_len=base_seq_len,
                max_seq_len=max_seq_len,
                base_shift=base_shift,
                max_shift=max_shift,
            )
        self.mu = mu
        sigmas = torch.arange(1, pseudo_timestep_range + 1, 1) / pseudo_timestep_range
        self.sigmas = time_shift(self.mu, 1.0, sigmas)

    @property
    def sigma_min(self):
        return self.sigmas[0]

    @property
    def sigma_max(self):
        return self.sigmas[-1]

    def calculate_denoised(self, sigma, model_output, model_input):
        sigma = sigma.view(sigma.shape[:1] + (1,) * (model_output.ndim - 1))
        return model_input - model_output * sigma

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        return sigma * noise + (1.0 - sigma) * latent_image


def simple_scheduler(n, sigma_min, sigma_max, inner_model, device):
    sigs = []
    ss = len(inner_model.sigmas) / n
    for x in range(n):
        sigs += [float(inner_model.sigmas[-(1 + int(x * ss))])]
    sigs += [0.0]
    return torch.FloatTensor(sigs).to(device)


class PromptChunk:
    def __init__(self):
        self.tokens = []
        self.multipliers = []


class T5TextProcessingEngine:
    def __init__(self, tokenizer, parse_prompt_attention, min_length=256):
        self.tokenizer = tokenizer
        self.parse_prompt_attention = parse_prompt_attention
        self.min_length = min_length
        self.id_end = 1
        self.id_pad = 0

    def tokenize(self, texts):
        tokenized = self.tokenizer(texts, truncation=False, add_special_tokens=False)["input_ids"]
        return tokenized

    def tokenize_line(self, line):
        parsed = self.parse_prompt_attention(line)

        tokenized = self.tokenize([text for text, _ in parsed])

        chunks = []
        chunk = PromptChunk()
        token_count = 0

        def next_chunk():
            nonlocal token_count
            nonlocal chunk

            chunk.tokens = chunk.tokens + [self.id_end]
            chunk.multipliers = chunk.multipliers + [1.0]
            current_chunk_length = len(chunk.tokens)

            token_count += current_chunk_length
            remaining_count = self.min_length - current_chunk_length

            if remaining_count > 0:
                chunk.tokens += [self.id_pad] * remaining_count
                chunk.multipliers += [1.0] * remaining_count

            chunks.append(chunk)
            chunk = PromptChunk()

        for tokens, (text, weight) in zip(tokenized, parsed):
            if text == "BREAK" and weight == -1:
                next_chunk()
                continue

            position = 0
            while position < len(tokens):
                token = tokens[position]
                chunk.tokens.append(token)
                chunk.multipliers.append(weight)
                position += 1

        if chunk.tokens or not chunks:
            next_chunk()

        return chunks, token_count

    def padded_chunks(self, line):
        """`__call__`'s part before the encoder: every chunk padded to the longest."""
        chunks, token_count = self.tokenize_line(line)
        max_tokens = 0
        for chunk in chunks:
            max_tokens = max(len(chunk.tokens), max_tokens)
        for chunk in chunks:
            remaining_count = max_tokens - len(chunk.tokens)
            if remaining_count > 0:
                chunk.tokens += [self.id_pad] * remaining_count
                chunk.multipliers += [1.0] * remaining_count
        return chunks

    def process_tokens(self, text_encoder, batch_tokens, batch_multipliers):
        tokens = torch.asarray(batch_tokens)
        z = text_encoder(input_ids=tokens).last_hidden_state
        multipliers = torch.asarray(batch_multipliers).to(z)
        # EmphasisOriginal.after_transformers
        original_mean = z.mean()
        z = z * multipliers.reshape(multipliers.shape + (1,)).expand(z.shape)
        new_mean = z.mean()
        z = z * (original_mean / new_mean)
        return z


def civitai_fix(lastline):
    if "Civitai" in lastline and "FLUX" in lastline:
        lastline = lastline.replace("Clip skip: 0, ", "")
        lastline = lastline.replace("Clip skip: 1, ", "")
        lastline = lastline.replace("Clip skip: 2, ", "")
        lastline = lastline.replace("Clip skip: 3, ", "")
        lastline = lastline.replace("Clip skip: 4, ", "")
        lastline = lastline.replace("Clip skip: 5, ", "")
        lastline = lastline.replace("Clip skip: 6, ", "")
        lastline = lastline.replace("Clip skip: 7, ", "")
        lastline = lastline.replace("Clip skip: 8, ", "")
        lastline = lastline.replace("Sampler: Undefined, ", "Sampler: Euler, Schedule type: Simple, ")
        lastline = lastline.replace("CFG scale: ", "CFG scale: 1, Distilled CFG Scale: ")
    return lastline
