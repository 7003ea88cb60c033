"""`sample`, which runs a k-diffusion sampler (an `engine.samplers.SamplerSpec`) the way A1111 v1.10 calls it.

`sample` passes each function exactly what `KDiffusionSampler.sample` / `sample_img2img` pass: eta (the web UI's
"Eta for ancestral samplers", default 1.0) to every function that takes one, churn settings only to Euler, Heun and
DPM2, the sampler's own options (DPM++ 2M SDE Heun's solver), the model's sigma range and step count to DPM fast and
DPM adaptive, and a Brownian-tree noise sampler seeded with the batch's image seeds to the SDE samplers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from engine.ksampling._common import Model, RandnLike, StepCallback
from engine.ksampling._dpm_solver import sample_dpm_adaptive, sample_dpm_fast
from engine.ksampling._dpmpp import (
    sample_dpmpp_2m,
    sample_dpmpp_2m_sde,
    sample_dpmpp_2s_ancestral,
    sample_dpmpp_3m_sde,
    sample_dpmpp_sde,
)
from engine.ksampling._karras import (
    sample_dpm_2,
    sample_dpm_2_ancestral,
    sample_euler,
    sample_euler_ancestral,
    sample_heun,
    sample_lcm,
    sample_lms,
)
from engine.ksampling._restart import sample_restart
from engine.ksampling.denoiser import DiscreteSchedule
from engine.ksampling.noise import BrownianTreeNoiseSampler
from engine.ksampling.schedules import ScheduleOptions, get_sigmas
from engine.samplers import SamplerSpec, effective_schedule, sampler_spec, schedule_label

SamplerFn = Callable[..., Tensor]

# The k-diffusion functions a `SamplerSpec.function` names.
FUNCTIONS: dict[str, SamplerFn] = {
    f.__name__: f
    for f in (
        sample_dpmpp_2m,
        sample_dpmpp_sde,
        sample_dpmpp_2m_sde,
        sample_dpmpp_2s_ancestral,
        sample_dpmpp_3m_sde,
        sample_euler_ancestral,
        sample_euler,
        sample_lms,
        sample_heun,
        sample_dpm_2,
        sample_dpm_2_ancestral,
        sample_dpm_fast,
        sample_dpm_adaptive,
        sample_restart,
        sample_lcm,
    )
}


@dataclass(frozen=True)
class SamplerSettings:
    """A1111's sampler settings (Settings > Sampler parameters); the defaults are the web UI's."""

    eta: float = 1.0  # "Eta for ancestral samplers"
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = 0.0  # 0 = infinity, as in the web UI
    s_noise: float = 1.0

    def kwargs_for(self, sampler: SamplerSpec) -> dict[str, float]:
        values = {
            "eta": self.eta,
            "s_churn": self.s_churn,
            "s_tmin": self.s_tmin,
            "s_tmax": self.s_tmax or math.inf,
            "s_noise": self.s_noise,
        }
        return {k: v for k, v in values.items() if k in sampler.extra_params}


def k_sampler(sampler: SamplerSpec | str) -> SamplerSpec:
    """The spec of a k-diffusion sampler (or of its display name); KeyError for any other sampler."""
    spec = sampler_spec(sampler) if isinstance(sampler, str) else sampler
    if spec.family != "k-diffusion":
        raise KeyError(f"{spec.name!r} is not a k-diffusion sampler")
    return spec


def sampler_sigmas(
    name: SamplerSpec | str,
    schedule: str,
    steps: int,
    denoiser: DiscreteSchedule,
    *,
    options: ScheduleOptions | None = None,
    always_discard_penultimate: bool = False,
) -> Tensor:
    """A1111's `KDiffusionSampler.get_sigmas`: the schedule ("Automatic" resolved per sampler) for `steps` steps,
    with the penultimate sigma discarded where the sampler (or the `always_discard...` setting) asks for it."""
    sampler = k_sampler(name)
    schedule = effective_schedule(sampler, schedule_label(schedule))
    discard = sampler.discard_penultimate_sigma or always_discard_penultimate
    return get_sigmas(schedule, steps, denoiser, discard_penultimate=discard, options=options)


def sample(
    name: SamplerSpec | str,
    denoiser: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: Mapping[str, Any] | None = None,
    noise: RandnLike = torch.randn_like,
    noise_sampler_seeds: Sequence[int] | None = None,
    callback: StepCallback | None = None,
    settings: SamplerSettings | None = None,
    model_sigma_range: tuple[float, float] | None = None,
    full_sigmas: Tensor | None = None,
) -> Tensor:
    """Run sampler `name` from `x` (already scaled: initial noise * sigmas[0]) down `sigmas`, as A1111 does.

    - `noise` replaces `torch.randn_like` (build it with `make_randn_like(generators)`; after `ensd_generators`).
    - `noise_sampler_seeds`: the batch's image seeds, for the SDE samplers' Brownian trees; None is A1111's
      `no_dpmpp_sde_batch_determinism` (a tree seeded from torch's global RNG).
    - DPM fast / adaptive in txt2img get the model's (sigma_min, sigma_max): `model_sigma_range`, or the
      denoiser's own when it is a `DiscreteSchedule`; for img2img pass `full_sigmas` (the whole schedule `sigmas`
      was cut from), and they get (sigmas[-2], sigmas[0]) as in A1111's `sample_img2img`.
    - `full_sigmas` also sets the Brownian tree's interval in img2img, as A1111 builds it from the whole schedule.
    - `callback(i, total)` runs once per step; an exception raised there (or in the model) cancels the run.
    """
    sampler = k_sampler(name)
    kwargs: dict[str, Any] = dict(sampler.options)
    kwargs.update((settings or SamplerSettings()).kwargs_for(sampler))
    kwargs["extra_args"] = extra_args
    kwargs["callback"] = callback
    if sampler.takes_noise:
        kwargs["noise"] = noise

    if sampler.brownian_noise and noise_sampler_seeds is not None:
        if len(noise_sampler_seeds) != x.shape[0]:
            raise ValueError(f"{x.shape[0]} images need {x.shape[0]} noise seeds, got {len(noise_sampler_seeds)}")
        tree_sigmas = sigmas if full_sigmas is None else full_sigmas
        tree_sigmas = tree_sigmas.to(x.device)
        kwargs["noise_sampler"] = BrownianTreeNoiseSampler(
            x, tree_sigmas[tree_sigmas > 0].min(), tree_sigmas.max(), seed=list(noise_sampler_seeds)
        )

    if sampler.sigma_range:
        if full_sigmas is not None:
            sigma_min: float | Tensor = sigmas[-2]
            sigma_max: float | Tensor = sigmas[0]
        elif model_sigma_range is not None:
            sigma_min, sigma_max = model_sigma_range
        elif isinstance(denoiser, DiscreteSchedule):
            sigma_min, sigma_max = denoiser.sigma_min, denoiser.sigma_max
        else:
            raise ValueError(f"{sampler.name} needs the model's sigma range: pass model_sigma_range")
        if sampler.function == "sample_dpm_fast":
            kwargs["n"] = len(sigmas) - 1
        return FUNCTIONS[sampler.function](denoiser, x, sigma_min, sigma_max, **kwargs)
    return FUNCTIONS[sampler.function](denoiser, x, sigmas.to(x.device), **kwargs)
