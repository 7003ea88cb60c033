"""A1111's sigma schedules (`modules/sd_schedulers.py` v1.10.1 and k-diffusion's `get_sigmas_*`), by schedule label
(the labels and aliases are `engine.samplers.SCHEDULES`).

Every schedule returns `n + 1` descending sigmas ending in 0 (KL Optimal ends at sigma_min, as A1111's does), on the
CPU, in float32, computed with the same operations as A1111 so that the sigmas match bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from engine.ksampling.denoiser import DiscreteSchedule, append_zero
from engine.samplers import schedule_label

# NVIDIA's 10-step lists (https://research.nvidia.com/labs/toronto-ai/AlignYourSteps/howto.html), as A1111 has them.
AYS_SD1: tuple[float, ...] = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
AYS_SDXL: tuple[float, ...] = (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029)


@dataclass(frozen=True)
class ScheduleOptions:
    """A1111's schedule settings; 0 means "the default" as in the web UI (the model's sigma range, the schedule's rho).

    `sdxl` picks the SDXL list for Align Your Steps (A1111 looks at the loaded model).
    """

    sigma_min: float = 0.0
    sigma_max: float = 0.0
    rho: float = 0.0
    beta_alpha: float = 0.6
    beta_beta: float = 0.6
    sdxl: bool = False


def karras_sigmas(
    n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, device: torch.device | str = "cpu"
) -> Tensor:
    """Karras et al. (2022): sigma^(1/rho) spaced linearly."""
    ramp = torch.linspace(0, 1, n)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return append_zero(sigmas).to(device)


def exponential_sigmas(n: int, sigma_min: float, sigma_max: float, device: torch.device | str = "cpu") -> Tensor:
    """log sigma spaced linearly."""
    sigmas = torch.linspace(math.log(sigma_max), math.log(sigma_min), n, device=device).exp()
    return append_zero(sigmas)


def polyexponential_sigmas(
    n: int, sigma_min: float, sigma_max: float, rho: float = 1.0, device: torch.device | str = "cpu"
) -> Tensor:
    """log sigma following a polynomial ramp of degree rho (rho 1 = Exponential)."""
    ramp = torch.linspace(1, 0, n, device=device) ** rho
    sigmas = torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min))
    return append_zero(sigmas)


def sgm_uniform_sigmas(n: int, sigma_min: float, sigma_max: float, model: DiscreteSchedule) -> Tensor:
    """t spaced linearly from t(sigma_max) over n + 1 points, the last dropped, then 0."""
    start = model.sigma_to_t(torch.tensor(sigma_max))
    end = model.sigma_to_t(torch.tensor(sigma_min))
    sigs = [model.t_to_sigma(ts) for ts in torch.linspace(start.item(), end.item(), n + 1)[:-1]]
    return torch.tensor([*(float(s) for s in sigs), 0.0], dtype=torch.float32)


def normal_sigmas(n: int, sigma_min: float, sigma_max: float, model: DiscreteSchedule) -> Tensor:
    """t spaced linearly from t(sigma_max) to t(sigma_min) over n points, then 0."""
    start = model.sigma_to_t(torch.tensor(sigma_max))
    end = model.sigma_to_t(torch.tensor(sigma_min))
    timesteps = torch.linspace(start.item(), end.item(), n)
    return torch.tensor([*(float(model.t_to_sigma(ts)) for ts in timesteps), 0.0], dtype=torch.float32)


def kl_optimal_sigmas(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """tan of atan(sigma) spaced linearly; n + 1 points from sigma_max down to sigma_min (no final 0, as A1111)."""
    alpha_min = torch.arctan(torch.tensor(sigma_min))
    alpha_max = torch.arctan(torch.tensor(sigma_max))
    step_indices = torch.arange(n + 1)
    return torch.tan(step_indices / n * alpha_min + (1.0 - step_indices / n) * alpha_max)


def align_your_steps_sigmas(n: int, *, sdxl: bool = False) -> Tensor:
    """NVIDIA's 10-step list, log-linearly interpolated to n points (used as is when n is 11), then 0."""
    base = AYS_SDXL if sdxl else AYS_SD1
    if n != len(base):
        xs = np.linspace(0, 1, len(base))
        ys = np.log(np.asarray(base[::-1]))
        new_ys = np.interp(np.linspace(0, 1, n), xs, ys)
        values = [*np.exp(new_ys)[::-1].tolist(), 0.0]
    else:
        values = [*base, 0.0]
    return torch.tensor(values, dtype=torch.float32)


def simple_sigmas(n: int, model: DiscreteSchedule) -> Tensor:
    """Every (len / n)-th model sigma from the top, then 0."""
    ss = len(model.sigmas) / n
    sigs = [float(model.sigmas[-(1 + int(x * ss))]) for x in range(n)]
    return torch.tensor([*sigs, 0.0], dtype=torch.float32)


def ddim_sigmas(n: int, model: DiscreteSchedule) -> Tensor:
    """Model sigmas at 1, 1 + len // n, ... (a DDIM-style stride), reversed, then 0."""
    ss = max(len(model.sigmas) // n, 1)
    sigs = [float(model.sigmas[x]) for x in range(1, len(model.sigmas), ss)]
    return torch.tensor([*sigs[::-1], 0.0], dtype=torch.float32)


def beta_sigmas(n: int, sigma_min: float, sigma_max: float, alpha: float = 0.6, beta: float = 0.6) -> Tensor:
    """Beta(alpha, beta) quantiles of 1 - linspace(0, 1, n), mapped onto [sigma_min, sigma_max], then 0."""
    timesteps = 1 - np.linspace(0, 1, n)
    quantiles = [float(stats.beta.ppf(x, alpha, beta)) for x in timesteps]
    sigmas = [sigma_min + (q * (sigma_max - sigma_min)) for q in quantiles]
    return torch.tensor([*sigmas, 0.0], dtype=torch.float32)


def get_sigmas(
    schedule: str,
    n: int,
    denoiser: DiscreteSchedule,
    *,
    discard_penultimate: bool = False,
    options: ScheduleOptions | None = None,
) -> Tensor:
    """The sigmas A1111 samples `n` steps with for a schedule type (label or name; "Automatic" = the model's
    default discretisation, i.e. Uniform).

    With `discard_penultimate` (DPM2, DPM2 a, DPM++ 3M SDE), n + 1 steps are planned and the second-to-last sigma is
    dropped, so n steps remain.
    """
    if n < 1:
        raise ValueError(f"a schedule needs at least 1 step, got {n}")
    opts = options or ScheduleOptions()
    label = schedule_label(schedule)
    steps = n + 1 if discard_penultimate else n

    m_sigma_min, m_sigma_max = denoiser.sigma_min, denoiser.sigma_max
    sigma_min = opts.sigma_min if opts.sigma_min != 0 else m_sigma_min
    sigma_max = opts.sigma_max if opts.sigma_max != 0 else m_sigma_max

    if label in ("Automatic", "Uniform"):
        sigmas = denoiser.get_sigmas(steps)
    elif label == "Karras":
        sigmas = karras_sigmas(steps, sigma_min, sigma_max, rho=opts.rho or 7.0)
    elif label == "Exponential":
        sigmas = exponential_sigmas(steps, sigma_min, sigma_max)
    elif label == "Polyexponential":
        sigmas = polyexponential_sigmas(steps, sigma_min, sigma_max, rho=opts.rho or 1.0)
    elif label == "SGM Uniform":
        sigmas = sgm_uniform_sigmas(steps, sigma_min, sigma_max, denoiser)
    elif label == "KL Optimal":
        sigmas = kl_optimal_sigmas(steps, sigma_min, sigma_max)
    elif label == "Align Your Steps":
        sigmas = align_your_steps_sigmas(steps, sdxl=opts.sdxl)
    elif label == "Simple":
        sigmas = simple_sigmas(steps, denoiser)
    elif label == "Normal":
        sigmas = normal_sigmas(steps, sigma_min, sigma_max, denoiser)
    elif label == "DDIM":
        sigmas = ddim_sigmas(steps, denoiser)
    else:  # Beta
        sigmas = beta_sigmas(steps, sigma_min, sigma_max, opts.beta_alpha, opts.beta_beta)

    if discard_penultimate:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas.cpu()
