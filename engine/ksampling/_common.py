"""Types and small helpers shared by the k-diffusion sampler ports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor


class Model(Protocol):
    """A k-diffusion denoiser: the denoised estimate of `x` at noise level `sigma` (one sigma per image)."""

    def __call__(self, x: Tensor, sigma: Tensor, **extra: Any) -> Tensor: ...


RandnLike = Callable[[Tensor], Tensor]
"""A `torch.randn_like` replacement: standard normal noise shaped like its argument."""

NoiseSampler = Callable[[Tensor, Tensor], Tensor]
"""`noise_sampler(sigma, sigma_next)`: unit-variance noise for the step between two noise levels."""

StepCallback = Callable[[int, "int | None"], None]
"""`callback(i, total)` once per sampler step (`total` is None where unknown: DPM adaptive). Raising cancels."""


def to_d(x: Tensor, sigma: Tensor, denoised: Tensor) -> Tensor:
    """The Karras ODE derivative; A1111 patches k-diffusion's `to_d` to this plain division (scalar sigma)."""
    return (x - denoised) / sigma


def get_ancestral_step(sigma_from: Tensor, sigma_to: Tensor, eta: float = 1.0) -> tuple[Tensor, Tensor | float]:
    """The noise level to step down to (sigma_down) and the noise to add back (sigma_up) for an ancestral step."""
    if not eta:
        return sigma_to, 0.0
    sigma_up = torch.minimum(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


def noise_sampler_from(noise: RandnLike, x: Tensor) -> NoiseSampler:
    """k-diffusion's `default_noise_sampler`: fresh `randn_like(x)` per step, whatever the noise levels."""
    return lambda sigma, sigma_next: noise(x)


def notify(callback: StepCallback | None, i: int, total: int | None) -> None:
    if callback is not None:
        callback(i, total)
