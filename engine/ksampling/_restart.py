"""Port of A1111's Restart sampler (`modules/sd_samplers_extra.py`; Xu et al. 2023, "Restart Sampling")."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from engine.ksampling._common import Model, RandnLike, StepCallback, notify, to_d
from engine.ksampling.schedules import karras_sigmas


def _nearest_index(sigmas: Tensor, value: float) -> int:
    return int(torch.argmin(abs(sigmas - value), dim=0))


def restart_step_list(
    sigmas: Tensor, restart_list: Mapping[float, tuple[int, int, float]] | None = None
) -> list[tuple[Tensor, Tensor]]:
    """The (sigma, next sigma) pairs Restart walks: the schedule with its restart segments spliced in.

    By default (A1111), 20+ steps re-plan a Karras schedule with `steps - restart_steps * restart_times` steps and
    restart once (9 steps) from sigma 0.1 back up to 2; 36+ steps restart twice with `steps // 4` steps each.
    """
    steps = sigmas.shape[0] - 1
    if restart_list is None:
        if steps >= 20:
            restart_steps = 9
            restart_times = 1
            if steps >= 36:
                restart_steps = steps // 4
                restart_times = 2
            sigmas = karras_sigmas(
                steps - restart_steps * restart_times, sigmas[-2].item(), sigmas[0].item(), device=sigmas.device
            )
            restart_list = {0.1: (restart_steps + 1, restart_times, 2)}
        else:
            restart_list = {}

    by_index = {_nearest_index(sigmas, key): value for key, value in restart_list.items()}

    step_list: list[tuple[Tensor, Tensor]] = []
    for i in range(len(sigmas) - 1):
        step_list.append((sigmas[i], sigmas[i + 1]))
        if i + 1 in by_index:
            restart_steps, restart_times, restart_max = by_index[i + 1]
            min_idx = i + 1
            max_idx = _nearest_index(sigmas, restart_max)
            if max_idx < min_idx:
                sigma_restart = karras_sigmas(
                    restart_steps, sigmas[min_idx].item(), sigmas[max_idx].item(), device=sigmas.device
                )[:-1]
                for _ in range(restart_times):
                    step_list.extend(itertools.pairwise(sigma_restart))
    return step_list


@torch.no_grad()
def sample_restart(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: Mapping[str, Any] | None = None,
    callback: StepCallback | None = None,
    noise: RandnLike = torch.randn_like,
    s_noise: float = 1.0,
    restart_list: Mapping[float, tuple[int, int, float]] | None = None,
) -> Tensor:
    """Heun steps along `restart_step_list`, adding fresh noise whenever the walk jumps back up in sigma.

    `restart_list` is `{min_sigma: (restart_steps, restart_times, max_sigma)}`; None picks A1111's default.
    """
    extra = dict(extra_args or {})
    s_in = x.new_ones([x.shape[0]])
    step_list = restart_step_list(sigmas, restart_list)
    total = len(step_list)

    last_sigma: Tensor | None = None
    for step_id, (old_sigma, new_sigma) in enumerate(step_list):
        if last_sigma is None:
            last_sigma = old_sigma
        elif last_sigma < old_sigma:
            x = x + noise(x) * s_noise * (old_sigma**2 - last_sigma**2) ** 0.5
        # One Heun step (Euler into sigma 0).
        denoised = model(x, old_sigma * s_in, **extra)
        d = to_d(x, old_sigma, denoised)
        notify(callback, step_id, total)
        dt = new_sigma - old_sigma
        if new_sigma == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = model(x_2, new_sigma * s_in, **extra)
            d_2 = to_d(x_2, new_sigma, denoised_2)
            d_prime = (d + d_2) / 2
            x = x + d_prime * dt
        last_sigma = new_sigma
    return x
