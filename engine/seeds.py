"""Noise the A1111 way (`modules/rng.py`): one generator per image seeded with that image's seed, the variation
seed's noise mixed in by A1111's slerp, seed resize, ENSD, and the RNG sources GPU, CPU and NV."""

from __future__ import annotations

import torch

from engine.philox import PhiloxGenerator

Generator = torch.Generator | PhiloxGenerator


def slerp(val: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """A1111's `slerp`, along dim 1 of a (C, H, W) tensor, including its swapped-weight linear fallback."""
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        # Upstream quirk kept on purpose: the weights are swapped here, and users' old seeds rely on it.
        return low * val + high * (1 - val)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - val) * omega) / so).unsqueeze(1) * low + (torch.sin(val * omega) / so).unsqueeze(1) * high


def create_generator(seed: int, source: str, device: str) -> Generator:
    """A per-image generator. "GPU" draws with torch on the CUDA device; with no CUDA device it uses the Philox
    port, which gives the numbers an NVIDIA GPU would, so civitai seeds mean the same noise on any host (A1111
    itself falls back to the CPU's different numbers there)."""
    if source == "NV" or (source == "GPU" and not device.startswith("cuda")):
        return PhiloxGenerator(seed)
    return torch.Generator(device if source == "GPU" else "cpu").manual_seed(seed)


def randn(shape: tuple[int, ...], generator: Generator, device: str) -> torch.Tensor:
    if isinstance(generator, PhiloxGenerator):
        return torch.from_numpy(generator.randn(shape)).to(device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


class ImageRNG:
    """Per-image noise for one batch; `first()` is the initial latent noise, `next()` each later draw."""

    def __init__(
        self,
        shape: tuple[int, int, int],
        seeds: list[int],
        *,
        subseeds: list[int] | None = None,
        subseed_strength: float = 0.0,
        seed_resize_from: tuple[int, int] | None = None,
        source: str = "CPU",
        device: str = "cpu",
        ensd: int = 0,
    ) -> None:
        self.shape = shape
        self.seeds = seeds
        self.subseeds = subseeds
        self.subseed_strength = subseed_strength
        self.seed_resize_from = seed_resize_from  # latent (h, w) the seed was first used at
        self.source = source
        self.device = device
        self.ensd = ensd
        self.generators = [create_generator(seed, source, device) for seed in seeds]

    def first(self) -> torch.Tensor:
        noise_shape = self.shape
        if self.seed_resize_from is not None:
            noise_shape = (self.shape[0], *self.seed_resize_from)
        xs = []
        for i, (seed, generator) in enumerate(zip(self.seeds, self.generators, strict=True)):
            if noise_shape != self.shape:
                noise = randn(noise_shape, create_generator(seed, self.source, self.device), self.device)
            else:
                noise = randn(self.shape, generator, self.device)
            if self.subseeds is not None and self.subseed_strength != 0:
                sub = create_generator(self.subseeds[i], self.source, self.device)
                noise = slerp(self.subseed_strength, noise, randn(noise_shape, sub, self.device))
            if noise_shape != self.shape:
                noise = _paste_centred(randn(self.shape, generator, self.device), noise)
            xs.append(noise)
        if self.ensd:
            # ENSD re-seeds the generators after the initial noise: it changes only the later (ancestral) draws.
            self.generators = [create_generator(seed + self.ensd, self.source, self.device) for seed in self.seeds]
        return torch.stack(xs)

    def next(self) -> torch.Tensor:
        return torch.stack([randn(self.shape, g, self.device) for g in self.generators])

    def torch_generators(self) -> list[torch.Generator]:
        """Generators diffusers' schedulers can draw from: this RNG's own where they are torch generators; the
        Philox port is not one, so CPU generators seeded `seed + ENSD` stand in (deterministic, LCM only)."""
        own = [g for g in self.generators if isinstance(g, torch.Generator)]
        if len(own) == len(self.generators):
            return own
        return [torch.Generator("cpu").manual_seed(seed + self.ensd) for seed in self.seeds]

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        """The samplers' `torch.randn_like`, drawn per image so batched images match single ones."""
        if tuple(x.shape[1:]) == self.shape and x.shape[0] == len(self.generators):
            return self.next().to(x.dtype)
        return torch.randn_like(x)


def _paste_centred(target: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Seed resize: put the noise drawn at the old size into the centre of the new one (or crop its centre)."""
    dx = (target.shape[2] - noise.shape[2]) // 2
    dy = (target.shape[1] - noise.shape[1]) // 2
    w = noise.shape[2] if dx >= 0 else noise.shape[2] + 2 * dx
    h = noise.shape[1] if dy >= 0 else noise.shape[1] + 2 * dy
    tx, ty = max(dx, 0), max(dy, 0)
    dx, dy = max(-dx, 0), max(-dy, 0)
    target[:, ty : ty + h, tx : tx + w] = noise[:, dy : dy + h, dx : dx + w]
    return target


class BatchRNG:
    """The noise of a batch of jobs: each job's own `ImageRNG` for its rows, so every image's noise is what it would
    be if its job ran alone."""

    def __init__(self, rngs: list[ImageRNG]) -> None:
        self.rngs = rngs
        self.seeds = [seed for rng in rngs for seed in rng.seeds]

    def first(self) -> torch.Tensor:
        return torch.cat([rng.first() for rng in self.rngs])

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        parts, start = [], 0
        for rng in self.rngs:
            stop = start + len(rng.seeds)
            parts.append(rng.randn_like(x[start:stop]))
            start = stop
        return torch.cat(parts)

    def torch_generators(self) -> list[torch.Generator]:
        return [g for rng in self.rngs for g in rng.torch_generators()]
