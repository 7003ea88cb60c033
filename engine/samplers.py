"""Every A1111 sampler and schedule type, once: names, aliases, family, default schedule, and how it is run.

The table mirrors A1111 v1.10.1 (`modules/sd_samplers_kdiffusion.py`, `sd_samplers_timesteps.py`,
`sd_samplers_extra.py`, `sd_schedulers.py`): display names in UI order, aliases, each sampler's "Automatic" schedule,
the options A1111 attaches to each k-diffusion function, and the paste rule that splits old combined names such as
`DPM++ 2M Karras`. Torch-free: `engine.ksampling` and `engine.denoise` run what a `SamplerSpec` describes.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Literal

from engine.errors import InvalidParamsError

SamplerFamily = Literal["k-diffusion", "a1111-timesteps"]

# Which of A1111's sampler settings a k-diffusion function takes (`sampler_extra_params` plus `eta`).
_CHURN = frozenset({"s_churn", "s_tmin", "s_tmax", "s_noise"})
_ETA_NOISE = frozenset({"eta", "s_noise"})


@dataclass(frozen=True)
class SamplerSpec:
    """One A1111 sampler and how Easel runs it.

    `function` names what runs it, per family: the k-diffusion function (`engine.ksampling`), or A1111's own
    timestep sampler (`engine.ksampling.timesteps`). The k-diffusion fields below follow
    `KDiffusionSampler`: which settings it takes, whether the penultimate sigma is discarded, whether it gets a
    Brownian-tree noise sampler, and whether it takes a sigma range (DPM fast / adaptive) instead of sigmas.
    """

    name: str
    aliases: tuple[str, ...]
    family: SamplerFamily
    function: str
    automatic: str | None = None  # the schedule "Automatic" means; None = the model's own discretisation
    second_order: bool = False  # two model calls per step: A1111 counts prompt-editing steps twice
    uses_ensd: bool = False  # its per-step noise depends on ENSD, so the infotext records it
    extra_params: frozenset[str] = frozenset()
    discard_penultimate_sigma: bool = False
    brownian_noise: bool = False
    sigma_range: bool = False
    takes_noise: bool = True  # calls torch.randn_like upstream, so it takes the per-image `noise` replacement
    options: tuple[tuple[str, Any], ...] = ()  # fixed keyword arguments (a solver type, a scheduler setting)

    @property
    def timesteps(self) -> bool:
        """A1111 ignores the schedule type for the samplers that walk a timestep grid (DDIM, PLMS, UniPC)."""
        return self.family != "k-diffusion"


@dataclass(frozen=True)
class ScheduleSpec:
    label: str
    name: str
    aliases: tuple[str, ...] = ()


def _k(name: str, alias: str, function: str, automatic: str | None = None, **more: Any) -> SamplerSpec:
    return SamplerSpec(name, (alias,), "k-diffusion", function, automatic, **more)


# UI order of A1111 v1.10.1; the first is the web UI's default.
# fmt: off
SAMPLERS: tuple[SamplerSpec, ...] = (
    _k("DPM++ 2M", "k_dpmpp_2m", "sample_dpmpp_2m", "Karras", takes_noise=False),
    _k(
        "DPM++ SDE", "k_dpmpp_sde", "sample_dpmpp_sde", "Karras", second_order=True, extra_params=_ETA_NOISE,
        brownian_noise=True, takes_noise=False,
    ),
    _k(
        "DPM++ 2M SDE", "k_dpmpp_2m_sde", "sample_dpmpp_2m_sde", "Exponential", extra_params=_ETA_NOISE,
        brownian_noise=True, takes_noise=False,
    ),
    _k(
        "DPM++ 2M SDE Heun", "k_dpmpp_2m_sde_heun", "sample_dpmpp_2m_sde", "Exponential", extra_params=_ETA_NOISE,
        brownian_noise=True, takes_noise=False, options=(("solver_type", "heun"),),
    ),
    _k(
        "DPM++ 2S a", "k_dpmpp_2s_a", "sample_dpmpp_2s_ancestral", "Karras", second_order=True, uses_ensd=True,
        extra_params=_ETA_NOISE,
    ),
    _k(
        "DPM++ 3M SDE", "k_dpmpp_3m_sde", "sample_dpmpp_3m_sde", "Exponential", extra_params=_ETA_NOISE,
        discard_penultimate_sigma=True, brownian_noise=True, takes_noise=False,
    ),
    # Euler a takes A1111's eta but not its s_noise setting (it is missing from sampler_extra_params).
    SamplerSpec(
        "Euler a", ("k_euler_a", "k_euler_ancestral"), "k-diffusion", "sample_euler_ancestral", uses_ensd=True,
        extra_params=frozenset({"eta"}),
    ),
    _k("Euler", "k_euler", "sample_euler", extra_params=_CHURN),
    _k("LMS", "k_lms", "sample_lms", takes_noise=False),
    _k("Heun", "k_heun", "sample_heun", second_order=True, extra_params=_CHURN),
    _k(
        "DPM2", "k_dpm_2", "sample_dpm_2", "Karras", second_order=True, extra_params=_CHURN,
        discard_penultimate_sigma=True,
    ),
    _k(
        "DPM2 a", "k_dpm_2_a", "sample_dpm_2_ancestral", "Karras", second_order=True, uses_ensd=True,
        extra_params=_ETA_NOISE, discard_penultimate_sigma=True,
    ),
    _k("DPM fast", "k_dpm_fast", "sample_dpm_fast", uses_ensd=True, extra_params=_ETA_NOISE, sigma_range=True),
    _k(
        "DPM adaptive", "k_dpm_ad", "sample_dpm_adaptive", uses_ensd=True, extra_params=frozenset({"eta"}),
        sigma_range=True,
    ),
    _k("Restart", "restart", "sample_restart", "Karras", second_order=True),
    SamplerSpec("DDIM", ("ddim",), "a1111-timesteps", "ddim"),
    SamplerSpec("DDIM CFG++", ("ddim_cfgpp",), "a1111-timesteps", "ddim_cfgpp"),
    SamplerSpec("PLMS", ("plms",), "a1111-timesteps", "plms"),
    # A1111's own UniPC (modules/models/diffusion/uni_pc): bh1, order 3, time-uniform, on its timestep grid.
    SamplerSpec("UniPC", ("unipc",), "a1111-timesteps", "unipc"),
    # A1111's own LCM (modules/sd_samplers_lcm.py): a k-diffusion sampler on LCM's 50 original timesteps.
    _k("LCM", "k_lcm", "sample_lcm"),
)
# fmt: on

SCHEDULES: tuple[ScheduleSpec, ...] = (
    ScheduleSpec("Automatic", "automatic"),
    ScheduleSpec("Uniform", "uniform"),
    ScheduleSpec("Karras", "karras"),
    ScheduleSpec("Exponential", "exponential"),
    ScheduleSpec("Polyexponential", "polyexponential"),
    ScheduleSpec("SGM Uniform", "sgm_uniform", ("SGMUniform",)),
    ScheduleSpec("KL Optimal", "kl_optimal"),
    ScheduleSpec("Align Your Steps", "align_your_steps"),
    ScheduleSpec("Simple", "simple"),
    ScheduleSpec("Normal", "normal"),
    ScheduleSpec("DDIM", "ddim"),
    ScheduleSpec("Beta", "beta"),
)

_BY_NAME = {s.name: s for s in SAMPLERS}
_BY_LOWER = {key.lower(): s for s in SAMPLERS for key in (s.name, *s.aliases)}
_SCHEDULE_BY_LOWER = {key.lower(): s for s in SCHEDULES for key in (s.label, s.name, *s.aliases)}
_AUTOMATIC = _SCHEDULE_BY_LOWER["automatic"]


def samplers_map_name(key: str) -> str | None:
    """A1111's `samplers_map`: lower-cased names and aliases (`k_euler_ancestral`) -> the sampler's name. The key is
    looked up as given (A1111 does not lower-case it), as its NovelAI import does."""
    spec = _BY_LOWER.get(key)
    return spec.name if spec is not None else None


def sampler_spec(name: str) -> SamplerSpec:
    """The spec of a canonical sampler name (as `resolve_sampler` gives and params store); KeyError otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no sampler {name!r}; known: {', '.join(_BY_NAME)}") from None


def sampler_names() -> list[str]:
    return [s.name for s in SAMPLERS]


def schedule_names() -> list[str]:
    return [s.label for s in SCHEDULES]


def schedule_label(name: str) -> str:
    """The label for a schedule label, A1111 name or alias (case and spacing forgiven); KeyError if unknown."""
    try:
        return _SCHEDULE_BY_LOWER[" ".join(name.split()).lower()].label
    except KeyError:
        raise KeyError(f"unknown schedule type {name!r}") from None


def _lookup_sampler(name: str) -> SamplerSpec | None:
    return _BY_NAME.get(name) or _BY_LOWER.get(name.lower())


def _split_combined(name: str) -> tuple[SamplerSpec, ScheduleSpec] | None:
    """A1111's paste rule for pre-1.9 names (`DPM++ 2M Karras`): cut a schedule suffix off the sampler name.

    A1111 takes the first schedule whose label ends the name, so `Euler a SGM Uniform` matches `Uniform` and
    falls back to DPM++ 2M; we try every schedule and keep a split whose sampler exists, which only differs
    where A1111 would have lost the user's choice.
    """
    for schedule in SCHEDULES:
        for key in (schedule.label, schedule.name, *schedule.aliases):
            if name.lower().endswith(" " + key.lower()):
                sampler = _lookup_sampler(name[: -len(key) - 1].strip())
                if sampler is not None:
                    return sampler, schedule
    return None


def resolve_sampler(name: str, schedule: str | None = None) -> tuple[SamplerSpec, str]:
    """The sampler spec and the canonical schedule label for what a user typed or pasted.

    Raises InvalidParamsError naming the closest known names for unknown input.
    """
    name = " ".join(name.split())
    sampler = _lookup_sampler(name)
    schedule_spec: ScheduleSpec | None = None
    if sampler is None:
        split = _split_combined(name)
        if split is None:
            close = difflib.get_close_matches(name, list(_BY_NAME), n=3, cutoff=0.4)
            hint = f" Did you mean {', '.join(close)}?" if close else f" Samplers: {', '.join(sampler_names())}."
            raise InvalidParamsError(f"Unknown sampler {name[:60]!r}.{hint}")
        sampler, schedule_spec = split
    # As in A1111's get_sampler_and_scheduler, a combined name's suffix wins over the schedule given with it
    # (an old infotext's `DPM++ 2M SDE Karras` arrives with the parser's default `Schedule type: Automatic`).
    if schedule is not None and schedule.strip() and schedule_spec is None:
        schedule_spec = _SCHEDULE_BY_LOWER.get(" ".join(schedule.split()).lower())
        if schedule_spec is None:
            close = difflib.get_close_matches(schedule, schedule_names(), n=3, cutoff=0.4)
            hint = f" Did you mean {', '.join(close)}?" if close else f" Schedule types: {', '.join(schedule_names())}."
            raise InvalidParamsError(f"Unknown schedule type {schedule[:60]!r}.{hint}")
    if schedule_spec is None or schedule_spec.label == sampler.automatic or sampler.timesteps:
        # The sampler's own default schedule reads back as Automatic, as A1111 converts it on paste; timestep
        # samplers ignore the schedule type in A1111, so what actually runs is recorded.
        schedule_spec = _AUTOMATIC
    return sampler, schedule_spec.label


def effective_schedule(sampler: SamplerSpec, schedule: str) -> str:
    """The schedule that runs and that A1111 writes as `Schedule type`: Automatic names the sampler's default
    where it has one (and stays Automatic, the model's own discretisation, where it has none)."""
    if schedule == "Automatic" and sampler.automatic:
        return sampler.automatic
    return schedule
