"""Sampler noise the A1111 way: per-image generators standing in for `torch.randn_like` (TorchHijack), the ENSD
re-seed, and k-diffusion's per-image-seeded Brownian tree for the SDE samplers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchsde
from torch import Tensor

from engine.ksampling._common import RandnLike


def make_randn_like(generators: Sequence[torch.Generator]) -> RandnLike:
    """A `randn_like` that draws each image's noise from its own generator, as A1111's ImageRNG does.

    Image i gets `torch.randn(shape[1:], generator=generators[i])` on the generator's device, so an image's noise is
    the same whether it is sampled alone or in a batch; the stack is then moved to the tensor's device and dtype.
    """
    gens = list(generators)

    def randn_like(x: Tensor) -> Tensor:
        if x.shape[0] != len(gens):
            raise ValueError(f"noise for a batch of {x.shape[0]} needs {x.shape[0]} generators, got {len(gens)}")
        draws = [torch.randn(tuple(x.shape[1:]), generator=g, device=g.device) for g in gens]
        return torch.stack(draws).to(device=x.device, dtype=x.dtype)

    return randn_like


def ensd_generators(generators: Sequence[torch.Generator], seeds: Sequence[int], ensd: int) -> list[torch.Generator]:
    """The generators for sampler noise once the initial noise is drawn: with an Eta noise seed delta (ENSD) != 0,
    A1111 replaces each image's generator by a new one on the same device seeded `seed + ENSD`; with 0 it keeps them.
    """
    if len(generators) != len(seeds):
        raise ValueError(f"{len(generators)} generators but {len(seeds)} seeds")
    if not ensd:
        return list(generators)
    return [
        torch.Generator(g.device).manual_seed(int(seed) + int(ensd)) for g, seed in zip(generators, seeds, strict=True)
    ]


class BatchedBrownianTree:
    """k-diffusion's wrapper around `torchsde.BrownianTree`: one tree per image when given one seed per image."""

    def __init__(self, x: Tensor, t0: Tensor, t1: Tensor, seed: int | Sequence[int] | None = None) -> None:
        t0, t1, self.sign = self._sort(t0, t1)
        w0 = torch.zeros_like(x)
        if seed is None:
            seed = int(torch.randint(0, 2**63 - 1, []).item())
        if isinstance(seed, int):
            seeds: list[int] = [seed]
            self.batched = False
        else:
            seeds = [int(s) for s in seed]
            if len(seeds) != x.shape[0]:
                raise ValueError(f"a batch of {x.shape[0]} needs {x.shape[0]} Brownian seeds, got {len(seeds)}")
            w0 = w0[0]
            self.batched = True
        self.trees = [torchsde.BrownianTree(t0, w0, t1, entropy=s) for s in seeds]

    @staticmethod
    def _sort(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, int]:
        return (a, b, 1) if a < b else (b, a, -1)

    def __call__(self, t0: Tensor, t1: Tensor) -> Tensor:
        t0, t1, sign = self._sort(t0, t1)
        w = torch.stack([tree(t0, t1) for tree in self.trees]) * (self.sign * sign)
        return w if self.batched else w[0]


class BrownianTreeNoiseSampler:
    """k-diffusion's noise sampler for the SDE samplers: Brownian increments between two noise levels, normalised
    to unit variance. A1111 passes the batch's per-image seeds so an image does not depend on its batch."""

    def __init__(
        self,
        x: Tensor,
        sigma_min: float | Tensor,
        sigma_max: float | Tensor,
        seed: int | Sequence[int] | None = None,
    ) -> None:
        t0, t1 = torch.as_tensor(sigma_min), torch.as_tensor(sigma_max)
        self.tree = BatchedBrownianTree(x, t0, t1, seed)

    def __call__(self, sigma: Tensor, sigma_next: Tensor) -> Tensor:
        t0, t1 = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        return self.tree(t0, t1) / (t1 - t0).abs().sqrt()
