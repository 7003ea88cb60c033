"""Initial noise the A1111 way (`modules/rng.py`): one generator per image seeded with that image's seed, the
variation seed's noise mixed in by A1111's slerp, and the same generators reused for later per-step noise."""

from __future__ import annotations

import torch


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


def make_generator(seed: int, device: str) -> torch.Generator:
    return torch.Generator(device).manual_seed(seed)


def initial_noise(
    shape: tuple[int, int, int],
    seeds: list[int],
    *,
    subseeds: list[int] | None = None,
    subseed_strength: float = 0.0,
    rng_device: str = "cpu",
) -> tuple[torch.Tensor, list[torch.Generator]]:
    """Per-image noise (batch, C, H, W) on `rng_device`, and the per-image generators for later draws."""
    generators = [make_generator(seed, rng_device) for seed in seeds]
    noises = []
    for i, generator in enumerate(generators):
        noise = torch.randn(shape, generator=generator, device=rng_device)
        if subseeds is not None and subseed_strength != 0:
            subnoise = torch.randn(shape, generator=make_generator(subseeds[i], rng_device), device=rng_device)
            noise = slerp(subseed_strength, noise, subnoise)
        noises.append(noise)
    return torch.stack(noises), generators
