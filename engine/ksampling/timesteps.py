"""A1111's own timestep samplers (`modules/sd_samplers_timesteps_impl.py`): DDIM, DDIM CFG++ and PLMS over A1111's
timestep grid, driven through an eps model (the UNet with CFG) rather than through diffusers' schedulers."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

EpsFn = Callable[[Tensor, Tensor], Tensor]
StepFn = Callable[[int, int], None]


def a1111_timesteps(steps: int) -> Tensor:
    """`range(0, 1000, 1000 // steps) + 1`, clipped to 999 (leading spacing, offset 1)."""
    return torch.clip(torch.arange(0, 1000, 1000 // steps) + 1, 0, 999)


def _alphas(alphas_cumprod: Tensor, timesteps: Tensor) -> tuple[Tensor, Tensor]:
    alphas = alphas_cumprod[timesteps]
    alphas_prev = alphas_cumprod[torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))].to(torch.float64)
    return alphas, alphas_prev


def img2img_start(alphas_cumprod: Tensor, timesteps: Tensor, t_enc: int, x: Tensor, noise: Tensor) -> Tensor:
    """A1111's `sample_img2img` for timestep samplers: the init latents noised to `timesteps[t_enc]`."""
    a = alphas_cumprod[timesteps[t_enc]]
    return x * a.sqrt().to(x.dtype) + noise * (1 - a).sqrt().to(x.dtype)


def sample_ddim(
    eps_fn: EpsFn,
    x: Tensor,
    timesteps: Tensor,
    alphas_cumprod: Tensor,
    *,
    eta: float = 0.0,
    randn_like: Callable[[Tensor], Tensor] = torch.randn_like,
    uncond_eps: Callable[[], Tensor] | None = None,
    callback: StepFn | None = None,
) -> Tensor:
    """DDIM; with `uncond_eps` (CFG++), the direction term uses the unconditional prediction instead."""
    alphas, alphas_prev = _alphas(alphas_cumprod, timesteps)
    sqrt_one_minus_alphas = torch.sqrt(1 - alphas)
    sigmas = eta * torch.sqrt((1 - alphas_prev) / (1 - alphas) * (1 - alphas / alphas_prev))
    s_in = x.new_ones((x.shape[0],))
    s_x = x.new_ones((x.shape[0], 1, 1, 1))
    total = len(timesteps) - 1
    for i in range(total):
        index = len(timesteps) - 1 - i
        e_t = eps_fn(x, timesteps[index].item() * s_in)
        direction = uncond_eps() if uncond_eps is not None else e_t
        a_t = alphas[index].item() * s_x
        a_prev = alphas_prev[index].item() * s_x
        sigma_t = sigmas[index].item() * s_x
        pred_x0 = (x - sqrt_one_minus_alphas[index].item() * s_x * e_t) / a_t.sqrt()
        dir_xt = (1.0 - a_prev - sigma_t**2).sqrt() * direction
        x = a_prev.sqrt() * pred_x0 + dir_xt + sigma_t * randn_like(x)
        if callback is not None:
            callback(i + 1, total)
    return x


def sample_plms(
    eps_fn: EpsFn,
    x: Tensor,
    timesteps: Tensor,
    alphas_cumprod: Tensor,
    *,
    callback: StepFn | None = None,
) -> Tensor:
    """PLMS: a pseudo improved Euler first step, then Adams-Bashforth of order 2, 3, then 4."""
    alphas, alphas_prev = _alphas(alphas_cumprod, timesteps)
    sqrt_one_minus_alphas = torch.sqrt(1 - alphas)
    s_in = x.new_ones((x.shape[0],))
    s_x = x.new_ones((x.shape[0], 1, 1, 1))
    old_eps: list[Tensor] = []

    def step(x: Tensor, e_t: Tensor, index: int) -> Tensor:
        a_t = alphas[index].item() * s_x
        a_prev = alphas_prev[index].item() * s_x
        pred_x0 = (x - sqrt_one_minus_alphas[index].item() * s_x * e_t) / a_t.sqrt()
        return a_prev.sqrt() * pred_x0 + (1.0 - a_prev).sqrt() * e_t

    total = len(timesteps) - 1
    for i in range(total):
        index = len(timesteps) - 1 - i
        ts = timesteps[index].item() * s_in
        t_next = timesteps[max(index - 1, 0)].item() * s_in
        e_t = eps_fn(x, ts)
        if not old_eps:
            x_prev = step(x, e_t, index)
            e_t_prime = (e_t + eps_fn(x_prev, t_next)) / 2
        elif len(old_eps) == 1:
            e_t_prime = (3 * e_t - old_eps[-1]) / 2
        elif len(old_eps) == 2:
            e_t_prime = (23 * e_t - 16 * old_eps[-1] + 5 * old_eps[-2]) / 12
        else:
            e_t_prime = (55 * e_t - 59 * old_eps[-1] + 37 * old_eps[-2] - 9 * old_eps[-3]) / 24
        x = step(x, e_t_prime, index)
        old_eps.append(e_t)
        if len(old_eps) >= 4:
            old_eps.pop(0)
        if callback is not None:
            callback(i + 1, total)
    return x
