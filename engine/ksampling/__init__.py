"""Exact A1111 k-diffusion sampling: the CompVis denoiser wrapper, A1111's sigma schedules, per-image noise and
ports of the k-diffusion samplers (plus A1111's Restart), for a pipeline that supplies the UNet as `eps_fn`. Which
sampler takes which options is `engine.samplers.SAMPLERS`; this package holds the math and the call conventions."""

from engine.ksampling._common import Model, NoiseSampler, RandnLike, StepCallback
from engine.ksampling.denoiser import (
    Denoiser,
    DiscreteSchedule,
    ModelFn,
    ldm_alphas_cumprod,
    model_alphas_cumprod,
    rescale_zero_terminal_snr,
)
from engine.ksampling.noise import BrownianTreeNoiseSampler, ensd_generators, make_randn_like
from engine.ksampling.samplers import FUNCTIONS, SamplerSettings, k_sampler, sample, sampler_sigmas
from engine.ksampling.schedules import ScheduleOptions, get_sigmas

__all__ = [
    "FUNCTIONS",
    "BrownianTreeNoiseSampler",
    "Denoiser",
    "DiscreteSchedule",
    "Model",
    "ModelFn",
    "NoiseSampler",
    "RandnLike",
    "SamplerSettings",
    "ScheduleOptions",
    "StepCallback",
    "ensd_generators",
    "get_sigmas",
    "k_sampler",
    "ldm_alphas_cumprod",
    "make_randn_like",
    "model_alphas_cumprod",
    "rescale_zero_terminal_snr",
    "sample",
    "sampler_sigmas",
]
