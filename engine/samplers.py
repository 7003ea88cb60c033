"""A1111 sampler and schedule-type names -> diffusers scheduler objects.

The name table mirrors A1111 v1.10.1 (`modules/sd_samplers_*.py`, `sd_schedulers.py`): display names, aliases,
each sampler's "Automatic" schedule, and the paste rule that splits old combined names such as `DPM++ 2M Karras`.
A sampler or schedule we cannot run is refused by name with the reason; nothing silently falls back.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import Any

from engine.errors import InvalidParamsError


@dataclass(frozen=True)
class SamplerInfo:
    name: str
    aliases: tuple[str, ...]
    automatic: str | None  # the schedule "Automatic" means; None = the model's own discretisation
    second_order: bool = False
    timesteps: bool = False  # DDIM/PLMS/UniPC/LCM: A1111 ignores the schedule type for these
    unsupported: str | None = None  # why we refuse it, if we do


@dataclass(frozen=True)
class ScheduleInfo:
    label: str
    name: str
    aliases: tuple[str, ...] = ()
    unsupported: str | None = None


# UI order of A1111 v1.10.1; the first is the web UI's default.
SAMPLERS: tuple[SamplerInfo, ...] = (
    SamplerInfo("DPM++ 2M", ("k_dpmpp_2m",), "Karras"),
    SamplerInfo("DPM++ SDE", ("k_dpmpp_sde",), "Karras", second_order=True),
    SamplerInfo("DPM++ 2M SDE", ("k_dpmpp_2m_sde",), "Exponential"),
    SamplerInfo("DPM++ 2M SDE Heun", ("k_dpmpp_2m_sde_heun",), "Exponential"),
    SamplerInfo("DPM++ 2S a", ("k_dpmpp_2s_a",), "Karras", second_order=True),
    SamplerInfo("DPM++ 3M SDE", ("k_dpmpp_3m_sde",), "Exponential"),
    SamplerInfo("Euler a", ("k_euler_a", "k_euler_ancestral"), None),
    SamplerInfo("Euler", ("k_euler",), None),
    SamplerInfo("LMS", ("k_lms",), None),
    SamplerInfo("Heun", ("k_heun",), None, second_order=True),
    SamplerInfo("DPM2", ("k_dpm_2",), "Karras", second_order=True),
    SamplerInfo("DPM2 a", ("k_dpm_2_a",), "Karras", second_order=True),
    SamplerInfo("DPM fast", ("k_dpm_fast",), None),
    SamplerInfo("DPM adaptive", ("k_dpm_ad",), None),
    SamplerInfo("Restart", ("restart",), "Karras", second_order=True),
    SamplerInfo("DDIM", ("ddim",), None, timesteps=True),
    SamplerInfo("DDIM CFG++", ("ddim_cfgpp",), None, timesteps=True),
    SamplerInfo("PLMS", ("plms",), None, timesteps=True),
    SamplerInfo("UniPC", ("unipc",), None, timesteps=True),
    SamplerInfo("LCM", ("k_lcm",), None, timesteps=True),
)

SCHEDULES: tuple[ScheduleInfo, ...] = (
    ScheduleInfo("Automatic", "automatic"),
    ScheduleInfo("Uniform", "uniform"),
    ScheduleInfo("Karras", "karras"),
    ScheduleInfo("Exponential", "exponential"),
    ScheduleInfo("Polyexponential", "polyexponential"),
    ScheduleInfo("SGM Uniform", "sgm_uniform", ("SGMUniform",)),
    ScheduleInfo("KL Optimal", "kl_optimal"),
    ScheduleInfo("Align Your Steps", "align_your_steps"),
    ScheduleInfo("Simple", "simple"),
    ScheduleInfo("Normal", "normal"),
    ScheduleInfo("DDIM", "ddim"),
    ScheduleInfo("Beta", "beta"),
)

_BY_NAME = {s.name: s for s in SAMPLERS}
_BY_LOWER = {key.lower(): s for s in SAMPLERS for key in (s.name, *s.aliases)}
_SCHEDULE_BY_LOWER = {key.lower(): s for s in SCHEDULES for key in (s.label, s.name, *s.aliases)}


def sampler_info(name: str) -> SamplerInfo:
    return _BY_NAME[name]


def sampler_names(*, supported_only: bool = True) -> list[str]:
    return [s.name for s in SAMPLERS if not (supported_only and s.unsupported)]


def schedule_names(*, supported_only: bool = True) -> list[str]:
    return [s.label for s in SCHEDULES if not (supported_only and s.unsupported)]


def _lookup_sampler(name: str) -> SamplerInfo | None:
    return _BY_NAME.get(name) or _BY_LOWER.get(name.lower())


def _split_combined(name: str) -> tuple[SamplerInfo, ScheduleInfo] | None:
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


def resolve_sampler(name: str, schedule: str | None = None) -> tuple[str, str]:
    """Canonical (sampler display name, schedule label) for what a user typed or pasted.

    Raises InvalidParamsError naming the closest known names for unknown input, and the reason for a
    sampler or schedule Easel cannot run.
    """
    name = " ".join(name.split())
    sampler = _lookup_sampler(name)
    schedule_info: ScheduleInfo | None = None
    if sampler is None:
        split = _split_combined(name)
        if split is None:
            close = difflib.get_close_matches(name, [s.name for s in SAMPLERS], n=3, cutoff=0.4)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise InvalidParamsError(f"Unknown sampler {name!r}.{hint}")
        sampler, schedule_info = split
    # As in A1111's get_sampler_and_scheduler, a combined name's suffix wins over the schedule given with it
    # (an old infotext's `DPM++ 2M SDE Karras` arrives with the parser's default `Schedule type: Automatic`).
    if schedule is not None and schedule.strip() and schedule_info is None:
        schedule_info = _SCHEDULE_BY_LOWER.get(" ".join(schedule.split()).lower())
        if schedule_info is None:
            close = difflib.get_close_matches(schedule, [s.label for s in SCHEDULES], n=3, cutoff=0.4)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise InvalidParamsError(f"Unknown schedule type {schedule!r}.{hint}")
    if schedule_info is None or schedule_info.label == sampler.automatic:
        # The sampler's own default schedule reads back as Automatic, as A1111 converts it on paste.
        schedule_info = _SCHEDULE_BY_LOWER["automatic"]
    if sampler.unsupported:
        raise InvalidParamsError(f"Sampler {sampler.name!r} is not available: {sampler.unsupported}.")
    if sampler.timesteps:
        # A1111 ignores the schedule type for timestep samplers; record what actually runs.
        schedule_info = _SCHEDULE_BY_LOWER["automatic"]
    if schedule_info.unsupported:
        raise InvalidParamsError(
            f"Schedule type {schedule_info.label!r} is not available: {schedule_info.unsupported}."
        )
    return sampler.name, schedule_info.label


def infotext_schedule(sampler: str, schedule: str) -> str:
    """What A1111 writes as `Schedule type`: Automatic resolves to a named default where the sampler has one."""
    info = _BY_NAME[sampler]
    if schedule == "Automatic" and info.automatic:
        return info.automatic
    return schedule


def make_scheduler(base_config: dict[str, Any], sampler: str) -> Any:
    """The diffusers scheduler for a timestep sampler (DDIM, PLMS, UniPC, LCM), from a pipeline's scheduler config.

    The k-diffusion samplers run through `engine.ksampling` instead, exactly as A1111 runs them.
    """
    import diffusers

    cls_name, options = _TIMESTEP_SCHEDULERS[sampler]
    cls = getattr(diffusers, cls_name)
    accepted = set(inspect.signature(cls.__init__).parameters)
    config = {k: v for k, v in base_config.items() if k in accepted}
    config.update(options)
    return cls.from_config(config)


# A1111's UniPC and LCM -> diffusers classes (close to A1111's own implementations, not bit-identical);
# DDIM, DDIM CFG++ and PLMS run A1111's own algorithms (engine/ksampling/timesteps.py).
_TIMESTEP_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    # A1111 runs UniPC as bh1, order 3; diffusers' bh1 yields NaN latents on SD schedules, so bh2 at order 3.
    "UniPC": ("UniPCMultistepScheduler", {"solver_type": "bh2", "solver_order": 3}),
    "LCM": ("LCMScheduler", {}),
}
