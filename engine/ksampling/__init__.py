"""Exact A1111 k-diffusion sampling: the CompVis denoiser wrapper, A1111's sigma schedules, per-image noise and
ports of the k-diffusion samplers (plus A1111's Restart), for a pipeline that supplies the UNet as `eps_fn`."""

from engine.ksampling._common import Model, NoiseSampler, RandnLike, StepCallback
from engine.ksampling.denoiser import Denoiser, DiscreteSchedule, ModelFn, ldm_alphas_cumprod
from engine.ksampling.noise import BrownianTreeNoiseSampler, ensd_generators, make_randn_like
from engine.ksampling.samplers import (
    SAMPLER_FUNCTIONS,
    KSampler,
    SamplerSettings,
    ksampler,
    sample,
    sampler_sigmas,
)
from engine.ksampling.schedules import SCHEDULE_LABELS, ScheduleOptions, get_sigmas

__all__ = [
    "SAMPLER_FUNCTIONS",
    "SCHEDULE_LABELS",
    "BrownianTreeNoiseSampler",
    "Denoiser",
    "DiscreteSchedule",
    "KSampler",
    "Model",
    "ModelFn",
    "NoiseSampler",
    "RandnLike",
    "SamplerSettings",
    "ScheduleOptions",
    "StepCallback",
    "ensd_generators",
    "get_sigmas",
    "ksampler",
    "ldm_alphas_cumprod",
    "make_randn_like",
    "sample",
    "sampler_sigmas",
]
