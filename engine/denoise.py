"""The denoising loop Easel owns (rather than `pipe(...)`), so that A1111's rules can apply at every step:
conditioning switched by prompt-editing schedules, `AND` parts, cond and uncond of different lengths, per-image
noise, and progress + cancellation per model call.

A `PassRun` describes one sampling pass (a plan's `SamplingPass` with its tensors); `run_pass` runs it with the
loop of the sampler's family: k-diffusion, or A1111's timestep samplers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from engine.errors import Cancelled, InvalidParamsError
from engine.families.base import TextCond, UNetFn
from engine.ksampling import ScheduleOptions
from engine.samplers import SamplerSpec
from engine.seeds import BatchRNG, ImageRNG

Schedule = list[tuple[int, TextCond]]  # (end_step, conditioning): applies while step <= end_step
StepFn = Callable[[int, int], None]


class Denoised:
    """The latest denoised estimate (x0) of a sampling run, for previews. A runner given one records what it has
    anyway (a reference, or the model input and output); x0 is computed only when `get()` is called."""

    def __init__(self) -> None:
        self._latest: Callable[[], torch.Tensor] | None = None

    def set(self, x0: torch.Tensor) -> None:
        self._latest = lambda: x0

    def set_lazy(self, compute: Callable[[], torch.Tensor]) -> None:
        self._latest = compute

    def get(self) -> torch.Tensor | None:
        return None if self._latest is None else self._latest()


def pick(schedule: Schedule, step: int) -> TextCond:
    """A1111's `reconstruct_cond_batch`: the first entry whose end step is at or after the current step."""
    for end, cond in schedule:
        if step <= end:
            return cond
    return schedule[-1][1]


@dataclass
class RowConds:
    """One job's part of a batch: its `rows` (its images) and its conditioning schedules (the negative prompt, and the
    weighted positive `AND` parts; every job of a batch has as many parts)."""

    rows: int
    conds: list[tuple[Schedule, float]]
    uncond: Schedule


@dataclass
class Guidance:
    """Classifier-free guidance for a batch of jobs, each with its own negative schedule and weighted positive `AND`
    parts (one job alone is a batch of one)."""

    unet: UNetFn
    jobs: list[RowConds]
    cfg_scale: float
    step: int = 0  # counts model calls, as A1111's CFGDenoiser does (second-order samplers count twice)
    cfg_multiplier: float = 1.0  # CFG++ maps the CFG scale from [0, 12.5] to [0, 1]
    last_uncond: torch.Tensor | None = None  # the last unconditional prediction, which CFG++ steps along
    # An inpainting UNet's extra input (the mask and the masked image's latents, one row per image), joined to x
    # after the sampler's input scaling, as A1111's c_concat.
    image_cond: torch.Tensor | None = None
    # Only the prompt is run, its prediction taken as it is (Forge's shortcut at CFG 1: see `cond_only`).
    cond_only: bool = False

    def eps(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        if self.image_cond is not None:
            x = torch.cat([x, self.image_cond.to(x.device, x.dtype)], dim=1)
        if self.cond_only:
            column = [pick(job.conds[0][0], self.step) for job in self.jobs]
            self.step += 1
            return self._column(x, torch.as_tensor(t, device=x.device).reshape(-1), column)
        # Column 0 is every job's negative, column k its k-th positive part: what the UNet is called with.
        picked = [
            (pick(job.uncond, self.step), [(pick(schedule, self.step), w) for schedule, w in job.conds])
            for job in self.jobs
        ]
        self.step += 1
        columns = [[u for u, _ in picked]] + [[cs[k][0] for _, cs in picked] for k in range(len(picked[0][1]))]
        t_batch = torch.as_tensor(t, device=x.device).reshape(-1)
        shape = columns[0][0].crossattn.shape
        if all(e.crossattn.shape == shape for column in columns for e in column):
            # One UNet call for every column, as diffusers batches CFG.
            n = len(columns)
            conds = [(e, job.rows) for column in columns for e, job in zip(column, self.jobs, strict=True)]
            out = self.unet(
                torch.cat([x] * n),
                t_batch.expand(x.shape[0] * n) if t_batch.numel() == 1 else t_batch.repeat(n),
                torch.cat([e.crossattn.expand(rows, -1, -1) for e, rows in conds]),
                _vectors(conds),
            )
            outs = list(out.chunk(n))
        else:
            # A1111's default when lengths differ (a long prompt, a short negative): separate calls, no padding.
            outs = [self._column(x, t_batch, column) for column in columns]
        eps_u = outs[0]
        self.last_uncond = eps_u
        results = []
        for (_, cs), (start, stop) in zip(picked, self._spans(), strict=True):
            result: torch.Tensor = eps_u[start:stop].clone()
            for (_, weight), eps_c in zip(cs, outs[1:], strict=True):
                result += weight * self.cfg_scale * self.cfg_multiplier * (eps_c[start:stop] - eps_u[start:stop])
            results.append(result)
        return results[0] if len(results) == 1 else torch.cat(results)

    def _column(self, x: torch.Tensor, t_batch: torch.Tensor, column: list[TextCond]) -> torch.Tensor:
        """One column's prediction, in one UNet call per conditioning length among its jobs."""
        groups: dict[torch.Size, list[int]] = {}
        for index, cond in enumerate(column):
            groups.setdefault(cond.crossattn.shape, []).append(index)
        spans = self._spans()
        parts: dict[int, torch.Tensor] = {}
        for indices in groups.values():
            if len(indices) == len(column):
                x_rows, t_rows = x, t_batch.expand(x.shape[0]) if t_batch.numel() == 1 else t_batch
            else:
                rows = torch.cat([torch.arange(*spans[i], device=x.device) for i in indices])
                x_rows = x[rows]
                t_rows = t_batch.expand(x_rows.shape[0]) if t_batch.numel() == 1 else t_batch[rows]
            conds = [(column[i], self.jobs[i].rows) for i in indices]
            out = self.unet(
                x_rows, t_rows, torch.cat([c.crossattn.expand(rows, -1, -1) for c, rows in conds]), _vectors(conds)
            )
            offset = 0
            for i in indices:
                parts[i] = out[offset : offset + self.jobs[i].rows]
                offset += self.jobs[i].rows
        return parts[0] if len(column) == 1 else torch.cat([parts[i] for i in range(len(column))])

    def _spans(self) -> list[tuple[int, int]]:
        spans, start = [], 0
        for job in self.jobs:
            spans.append((start, start + job.rows))
            start += job.rows
        return spans

    def last_uncond_eps(self) -> torch.Tensor:
        assert self.last_uncond is not None
        return self.last_uncond


def cond_only(jobs: Sequence[RowConds], cfg_scale: float) -> bool:
    """Whether guidance at this scale is the prompt's prediction alone: CFG 1 with one positive part of weight 1 per
    job (u + 1 * (c - u) = c), which Forge computes without running the negative prompt."""
    return cfg_scale == 1.0 and all(len(job.conds) == 1 and job.conds[0][1] == 1.0 for job in jobs)


def _vectors(conds: list[tuple[TextCond, int]]) -> torch.Tensor | None:
    if conds[0][0].vector is None:
        return None
    return torch.cat([c.vector.expand(rows, -1) for c, rows in conds if c.vector is not None])


@dataclass
class PassRun:
    """One sampling pass as it runs: a schedule of `schedule_steps`, of which the last `run_steps` run, from pure
    noise (`init_latents` None: txt2img) or from init latents noised to where the run starts (img2img, hires).

    `report` is the one progress-and-cancel callback every loop calls after each step. `denoised`, when given,
    gets each step's denoised estimate (x0), for previews.
    """

    sampler: SamplerSpec
    schedule: str
    scheduler_config: Mapping[str, Any]
    guidance: Guidance
    noise: torch.Tensor
    rng: ImageRNG | BatchRNG
    schedule_steps: int
    run_steps: int
    init_latents: torch.Tensor | None = None
    on_step: StepFn | None = None
    is_cancelled: Callable[[], bool] | None = None
    denoised: Denoised | None = None
    schedule_options: ScheduleOptions | None = None
    # Inpainting: (latent mask, 1 = repaint; init latents). A1111's CFG denoiser blends its output with them after
    # every model call: x0 for the k-diffusion samplers, the guided eps for DDIM, PLMS and UniPC.
    blend: tuple[torch.Tensor, torch.Tensor] | None = None

    def blended(self, out: torch.Tensor) -> torch.Tensor:
        if self.blend is None:
            return out
        repaint, init = self.blend
        return out * repaint + init * (1 - repaint)

    def check_cancelled(self) -> None:
        if self.is_cancelled is not None and self.is_cancelled():
            raise Cancelled("The job was cancelled.")

    def report(self, done: int, total: int) -> None:
        self.check_cancelled()
        if self.on_step is not None:
            self.on_step(done, total)


def run_pass(run: PassRun) -> torch.Tensor:
    """Run one pass with its sampler family's loop; returns the latents."""
    if run.sampler.family == "k-diffusion":
        return _run_ksampler(run)
    if run.scheduler_config.get("prediction_type") == "flux":
        raise InvalidParamsError(
            f"{run.sampler.name} runs on SD's timesteps; a Flux model takes the k-diffusion samplers (Euler, DPM++...)."
        )
    return _run_a1111_timesteps(run)


def _run_ksampler(run: PassRun) -> torch.Tensor:
    """A k-diffusion sampler exactly as A1111 drives it (`sd_samplers_kdiffusion.py`). `denoised` gets the
    denoiser's output of the latest model evaluation (a reference: the samplers compute it anyway), which for a
    second-order step is the corrector's estimate."""
    from engine.ksampling import Denoiser, Model, sample, sampler_sigmas
    from engine.ksampling.denoiser import FluxDenoiser, LCMDenoiser

    noise = run.noise
    flux = run.scheduler_config.get("prediction_type") == "flux"
    denoiser: Denoiser | FluxDenoiser
    if flux:
        denoiser = FluxDenoiser(run.guidance.eps, float(run.scheduler_config["flux_mu"]))
    else:
        kind = LCMDenoiser if run.sampler.function == "sample_lcm" else Denoiser
        denoiser = kind.from_scheduler_config(run.guidance.eps, run.scheduler_config, device=noise.device)
    model: Model = denoiser
    if run.blend is not None:

        def blending(x: torch.Tensor, sigma: torch.Tensor, **extra: Any) -> torch.Tensor:
            return run.blended(denoiser(x, sigma, **extra))

        model = blending
    if run.denoised is not None:
        record, inner = run.denoised, model

        def recording(x: torch.Tensor, sigma: torch.Tensor, **extra: Any) -> torch.Tensor:
            x0 = inner(x, sigma, **extra)
            record.set(x0)
            return x0

        model = recording
    sigmas = sampler_sigmas(run.sampler, run.schedule, run.schedule_steps, denoiser, options=run.schedule_options)
    sigmas = sigmas.to(noise.device)
    full_sigmas = None
    if run.init_latents is None:
        x = noise * sigmas[0]  # k-diffusion starts from noise scaled to the largest sigma
    else:
        # A1111's sample_img2img: run the last `run_steps` of the schedule from the noised init latents.
        full_sigmas = sigmas
        sigmas = sigmas[max(len(sigmas) - 1 - run.run_steps, 0) :]
        # A flow model's noised latents interpolate towards the noise (Forge's `noise_scaling` for "const").
        x = run.init_latents * (1 - sigmas[0]) + noise * sigmas[0] if flux else run.init_latents + noise * sigmas[0]

    def callback(i: int, total: int | None) -> None:
        expected = total if total is not None else len(sigmas) - 1
        run.report(min(i + 1, expected), expected)

    return sample(
        run.sampler,
        model,
        x,
        sigmas,
        noise=run.rng.randn_like,
        noise_sampler_seeds=run.rng.seeds,
        callback=callback,
        model_sigma_range=(denoiser.sigma_min, denoiser.sigma_max),  # what `sample` reads off a bare Denoiser
        full_sigmas=full_sigmas,
    )


def _run_a1111_timesteps(run: PassRun) -> torch.Tensor:
    """DDIM, DDIM CFG++, PLMS and UniPC on A1111's timestep grid, as `sd_samplers_timesteps.py` runs them. `denoised`
    gets, lazily, the `pred_x0` of the latest model call (what A1111 previews for these samplers)."""
    from engine.ksampling import model_alphas_cumprod
    from engine.ksampling.timesteps import a1111_timesteps, img2img_start, sample_ddim, sample_plms, sample_unipc

    config, noise, guidance = run.scheduler_config, run.noise, run.guidance
    alphas_cumprod = model_alphas_cumprod(config).to(noise.device)
    timesteps = a1111_timesteps(run.schedule_steps).to(noise.device)
    x = noise
    if run.init_latents is not None:
        t_enc = run.run_steps - 1
        x = img2img_start(alphas_cumprod, timesteps, t_enc, run.init_latents, noise)
        timesteps = timesteps[:t_enc]

    def guided(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return run.blended(guidance.eps(x_t, t))

    eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = guided
    uncond_eps: Callable[[], torch.Tensor] = guidance.last_uncond_eps
    if config.get("prediction_type") == "v_prediction":
        # A1111's CompVisTimestepsVDenoiser: these samplers step on eps, so v is turned into eps at each call.
        last: list[tuple[torch.Tensor, torch.Tensor]] = []

        def eps_from_v(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            a = alphas_cumprod[t.long()].reshape(-1, 1, 1, 1).to(x_t.dtype)
            last[:] = [(a, x_t)]
            return run.blended(a.sqrt() * guidance.eps(x_t, t) + (1 - a).sqrt() * x_t)

        def uncond_eps_from_v() -> torch.Tensor:
            a, x_t = last[0]
            return a.sqrt() * guidance.last_uncond_eps() + (1 - a).sqrt() * x_t

        eps_fn, uncond_eps = eps_from_v, uncond_eps_from_v
    if run.denoised is not None:
        record = run.denoised

        model_eps = eps_fn

        def recording(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            e_t = model_eps(x_t, t)

            def x0() -> torch.Tensor:
                a = alphas_cumprod[t.long()].reshape(-1, 1, 1, 1).to(x_t.dtype)
                return (x_t - (1 - a).sqrt() * e_t) / a.sqrt()

            record.set_lazy(x0)
            return e_t

        eps_fn = recording
    if run.sampler.function == "unipc":
        if len(timesteps) < 1:
            return x
        # A1111 starts an img2img pass at the grid's last timestep + 1, in its (float32) arithmetic.
        t_start = timesteps[-1].float() / 1000 + 1 / 1000 if run.init_latents is not None else None
        return sample_unipc(eps_fn, x, alphas_cumprod, steps=len(timesteps), t_start=t_start, callback=run.report)
    if len(timesteps) < 2:
        return x  # A1111 runs no model call here either (e.g. img2img with a tiny strength)
    if run.sampler.function == "plms":
        return sample_plms(eps_fn, x, timesteps, alphas_cumprod, callback=run.report)
    randn_like = run.rng.randn_like
    if run.sampler.function == "ddim_cfgpp":
        guidance.cfg_multiplier = 1 / 12.5
        return sample_ddim(
            eps_fn, x, timesteps, alphas_cumprod, randn_like=randn_like, uncond_eps=uncond_eps,
            callback=run.report,
        )  # fmt: skip
    return sample_ddim(eps_fn, x, timesteps, alphas_cumprod, randn_like=randn_like, callback=run.report)


def upscale_latents(latents: torch.Tensor, size: tuple[int, int], upscaler: str) -> torch.Tensor:
    """A1111's latent upscale modes (bilinear, bicubic, nearest, with or without antialias)."""
    modes = {
        "Latent": ("bilinear", False),
        "Latent (antialiased)": ("bilinear", True),
        "Latent (bicubic)": ("bicubic", False),
        "Latent (bicubic antialiased)": ("bicubic", True),
        "Latent (nearest)": ("nearest", False),
        "Latent (nearest-exact)": ("nearest-exact", False),
    }
    mode, antialias = modes[upscaler]
    return F.interpolate(latents, size=size, mode=mode, antialias=antialias)


def crop_latents(latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A1111's hires truncation: cut (h - height) and (w - width) latent rows/columns, split around the centre."""
    ty, tx = latents.shape[2] - height, latents.shape[3] - width
    return latents[:, :, ty // 2 : latents.shape[2] - (ty + 1) // 2, tx // 2 : latents.shape[3] - tx // 2]


def decode(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """Latents -> images in [0, 1], shape (B, H, W, 3), float32 on the CPU; NaN survives for the caller to see."""
    scaled = latents / vae.config.scaling_factor
    shift = getattr(vae.config, "shift_factor", None)
    if shift:
        scaled = scaled + shift
    image: torch.Tensor = vae.decode(scaled.to(vae.dtype)).sample.float()
    image = image / 2 + 0.5
    return image.permute(0, 2, 3, 1).cpu().clamp(0, 1)  # clamp keeps NaN, so a diverged run stays visible


def encode(vae: Any, images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1], (B, 3, H, W) -> latents. The posterior mean, so the same image always gives the same
    latents (A1111 samples the posterior with the global RNG, which no seed controls)."""
    dist = vae.encode((images * 2 - 1).to(vae.device, vae.dtype)).latent_dist
    latents: torch.Tensor = dist.mean.float()
    shift = getattr(vae.config, "shift_factor", None)
    if shift:
        latents = latents - shift
    return latents * float(vae.config.scaling_factor)
