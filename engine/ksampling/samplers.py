"""A1111's k-diffusion samplers by display name, and `sample`, which runs one the way A1111 v1.10 calls it.

`sample` passes each function exactly what `KDiffusionSampler.sample` / `sample_img2img` pass: eta (the web UI's
"Eta for ancestral samplers", default 1.0) to every function that takes one, churn settings only to Euler, Heun and
DPM2, the sampler's own options (DPM++ 2M SDE Heun's solver), the model's sigma range and step count to DPM fast and
DPM adaptive, and a Brownian-tree noise sampler seeded with the batch's image seeds to the SDE samplers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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
    sample_lms,
)
from engine.ksampling._restart import sample_restart
from engine.ksampling.denoiser import DiscreteSchedule
from engine.ksampling.noise import BrownianTreeNoiseSampler
from engine.ksampling.schedules import ScheduleOptions, get_sigmas

SamplerFn = Callable[..., Tensor]


@dataclass(frozen=True)
class KSampler:
    """One A1111 k-diffusion sampler: its function and the options A1111 attaches to it."""

    name: str
    function: SamplerFn
    automatic_schedule: str | None = None  # what "Automatic" means; None = the model's discretisation (Uniform)
    params: frozenset[str] = frozenset()  # which of eta / s_churn / s_tmin / s_tmax / s_noise A1111 passes
    discard_penultimate_sigma: bool = False
    brownian_noise: bool = False
    second_order: bool = False
    uses_ensd: bool = False
    sigma_range: bool = False  # DPM fast / adaptive: takes sigma_min, sigma_max (and n) instead of sigmas
    takes_noise: bool = True  # calls torch.randn_like upstream, so takes the `noise` replacement
    options: Mapping[str, Any] = field(default_factory=dict)


_CHURN = frozenset({"s_churn", "s_tmin", "s_tmax", "s_noise"})
_ETA_NOISE = frozenset({"eta", "s_noise"})

# UI order of A1111 v1.10.1 (`samplers_k_diffusion` + Restart); `params` follows `sampler_extra_params` plus `eta`.
SAMPLER_FUNCTIONS: dict[str, KSampler] = {
    s.name: s
    for s in (
        KSampler("DPM++ 2M", sample_dpmpp_2m, "Karras", takes_noise=False),
        KSampler(
            "DPM++ SDE",
            sample_dpmpp_sde,
            "Karras",
            _ETA_NOISE,
            brownian_noise=True,
            second_order=True,
            takes_noise=False,
        ),
        KSampler(
            "DPM++ 2M SDE", sample_dpmpp_2m_sde, "Exponential", _ETA_NOISE, brownian_noise=True, takes_noise=False
        ),
        KSampler(
            "DPM++ 2M SDE Heun",
            sample_dpmpp_2m_sde,
            "Exponential",
            _ETA_NOISE,
            brownian_noise=True,
            takes_noise=False,
            options={"solver_type": "heun"},
        ),
        KSampler("DPM++ 2S a", sample_dpmpp_2s_ancestral, "Karras", _ETA_NOISE, second_order=True, uses_ensd=True),
        KSampler(
            "DPM++ 3M SDE",
            sample_dpmpp_3m_sde,
            "Exponential",
            _ETA_NOISE,
            discard_penultimate_sigma=True,
            brownian_noise=True,
            takes_noise=False,
        ),
        # Euler a takes A1111's eta but not its s_noise setting (it is missing from sampler_extra_params).
        KSampler("Euler a", sample_euler_ancestral, None, frozenset({"eta"}), uses_ensd=True),
        KSampler("Euler", sample_euler, None, _CHURN),
        KSampler("LMS", sample_lms, None, takes_noise=False),
        KSampler("Heun", sample_heun, None, _CHURN, second_order=True),
        KSampler("DPM2", sample_dpm_2, "Karras", _CHURN, discard_penultimate_sigma=True, second_order=True),
        KSampler(
            "DPM2 a",
            sample_dpm_2_ancestral,
            "Karras",
            _ETA_NOISE,
            discard_penultimate_sigma=True,
            second_order=True,
            uses_ensd=True,
        ),
        KSampler("DPM fast", sample_dpm_fast, None, _ETA_NOISE, uses_ensd=True, sigma_range=True),
        KSampler("DPM adaptive", sample_dpm_adaptive, None, frozenset({"eta"}), uses_ensd=True, sigma_range=True),
        KSampler("Restart", sample_restart, "Karras", second_order=True),
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

    def kwargs_for(self, sampler: KSampler) -> dict[str, float]:
        values = {
            "eta": self.eta,
            "s_churn": self.s_churn,
            "s_tmin": self.s_tmin,
            "s_tmax": self.s_tmax or math.inf,
            "s_noise": self.s_noise,
        }
        return {k: v for k, v in values.items() if k in sampler.params}


def ksampler(name: str) -> KSampler:
    """The sampler for an A1111 display name; KeyError naming the known ones otherwise."""
    try:
        return SAMPLER_FUNCTIONS[name]
    except KeyError:
        raise KeyError(f"no k-diffusion sampler {name!r}; known: {', '.join(SAMPLER_FUNCTIONS)}") from None


def sampler_sigmas(
    name: str,
    schedule: str,
    steps: int,
    denoiser: DiscreteSchedule,
    *,
    options: ScheduleOptions | None = None,
    always_discard_penultimate: bool = False,
) -> Tensor:
    """A1111's `KDiffusionSampler.get_sigmas`: the schedule ("Automatic" resolved per sampler) for `steps` steps,
    with the penultimate sigma discarded where the sampler (or the `always_discard...` setting) asks for it."""
    sampler = ksampler(name)
    if schedule.strip().lower() == "automatic" and sampler.automatic_schedule is not None:
        schedule = sampler.automatic_schedule
    discard = sampler.discard_penultimate_sigma or always_discard_penultimate
    return get_sigmas(schedule, steps, denoiser, discard_penultimate=discard, options=options)


def sample(
    name: str,
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
    sampler = ksampler(name)
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
            raise ValueError(f"{name} needs the model's sigma range: pass model_sigma_range")
        if name == "DPM fast":
            kwargs["n"] = len(sigmas) - 1
        return sampler.function(denoiser, x, sigma_min, sigma_max, **kwargs)
    return sampler.function(denoiser, x, sigmas.to(x.device), **kwargs)
