"""The diffusers adapter: executes jobs' `GenerationPlan`s on a loaded model, reporting progress and honouring
cancellation, one job or a batch of compatible jobs at once (`engine.plan.GenerationPlan.batch_key`).

Runs only on the executor's worker thread, which owns torch. `_generate` reads as the numbered steps of a diffusers
pipeline: model, LoRAs, then each sampling pass (condition, noise, sample), decode, parameter text. Everything
those steps decide was decided by the plans; a model family (`engine.families`) supplies the conditioning and the
UNet call. In a batch every job keeps its own prompts, prompt-editing schedules, seeds, noise and init image, and
gets only its own images.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from engine.blobs import BlobStore
from engine.denoise import (
    Denoised,
    Guidance,
    PassRun,
    RowConds,
    Schedule,
    cond_only,
    crop_latents,
    decode,
    encode,
    run_pass,
    upscale_latents,
)
from engine.detailer import MAX_REGIONS, detailer_fields, is_skip, ordinal, region_prompt, tab_prompts
from engine.detectors.files import DetectorLibrary
from engine.detectors.masks import region_masks, touching
from engine.detectors.predict import DetectorModels
from engine.embeddings import Embedding, EmbeddingDB, ti_hashes
from engine.errors import (
    Cancelled,
    EaselError,
    GenerationFailedError,
    InvalidParamsError,
    OutOfMemoryError,
    short_reason,
)
from engine.families.flux import FluxFamily
from engine.flux.modules import FluxModules
from engine.images import read_infotext
from engine.infotext import ZERO_TERMINAL_SNR, create_infotext, extras_text, quote, ui_number
from engine.inpaint import (
    LATENT_NOISE,
    LATENT_NOTHING,
    MASKED_CONTENT,
    Prepared,
    binary_mask,
    finish,
    mask_options,
    prepare,
)
from engine.ksampling import ScheduleOptions
from engine.loras import LoraFile, LoraLibrary, apply_loras, infotext_hashes, patch_loras
from engine.models.layers import COMPONENTS, LayerShapes, module_shapes
from engine.models.loader import LoadedModel, ModelLoader
from engine.models.registry import ModelRegistry
from engine.params import GenerationParams
from engine.plan import (
    GenerationPlan,
    PassConditioning,
    SamplingPass,
    TextSchedule,
    detail_params,
    output_size,
    pass_cfg,
    pass_distilled_cfg,
)
from engine.previews import LatentPreview, PreviewFn
from engine.prompts.extra_networks import LoraCall
from engine.seeds import BatchRNG, ImageRNG
from engine.speed import SpeedOptions
from engine.taggers.description import Description
from engine.taggers.files import TaggerLibrary
from engine.taggers.run import TaggerModels
from engine.upscalers.files import UpscalerLibrary
from engine.upscalers.models import UpscalerModels, extras_upscale, hires_images
from engine.vaes import VaeFile, VaeLibrary

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
CancelledFn = Callable[[], bool]


@dataclass(frozen=True)
class RawImage:
    """A decoded image before encoding (encoding happens off the worker thread)."""

    image: Any  # PIL.Image.Image
    seed: int
    infotext: str
    extras: str = ""  # A1111's `extras` chunk: the postprocessing fields of an upscale
    notes: tuple[str, ...] = ()  # what the user should know about this image (a detector that found nothing)
    description: Description | None = None  # a `/describe` job's tags (`image` is the image described)


@dataclass(frozen=True)
class JobHooks:
    """What one job of a batch reports to: progress after each step, whether it was cancelled, and previews."""

    on_step: ProgressFn | None = None
    is_cancelled: CancelledFn | None = None
    on_preview: PreviewFn | None = None


@dataclass
class _Job:
    """One job of a run: its plan, its rows of the batch, and what it has gathered on the way."""

    plan: GenerationPlan
    hooks: JobHooks
    progress: _PassProgress
    start: int = 0
    stop: int = 0
    used: dict[str, Embedding] = field(default_factory=dict)  # embeddings its texts used, for `TI hashes`
    error: EaselError | None = None
    inpaint: Prepared | None = None  # an inpaint job's prepared image, mask and overlay
    images: tuple[Image.Image, Image.Image] | None = None  # a detailer region's image and mask (not in the blobs)
    blend: tuple[torch.Tensor, torch.Tensor] | None = None  # its rows' latent mask (1 = repaint) and init latents

    def cancelled(self) -> bool:
        return self.hooks.is_cancelled is not None and self.hooks.is_cancelled()


@dataclass
class _Run:
    """A batch of compatible jobs on one loaded model (one job alone is a batch of one), as `_generate` carries it
    from step to step. The lead plan's shared settings (size, steps, sampler, CFG...) are every job's."""

    jobs: list[_Job]
    loaded: LoadedModel
    vae: Any  # the checkpoint's own VAE, or one from the VAE folder
    vae_file: VaeFile | None
    loras: list[tuple[LoraFile, LoraCall]]
    lora_state: str  # keys the conditioning cache: LoRAs change what the text encoder gives
    denoised: Denoised | None
    blend: tuple[torch.Tensor, torch.Tensor] | None = None  # the batch's latent mask and init latents (inpainting)

    @property
    def lead(self) -> GenerationPlan:
        return self.jobs[0].plan

    def live(self) -> list[_Job]:
        return [job for job in self.jobs if job.error is None]

    def all_cancelled(self) -> bool:
        return all(job.cancelled() for job in self.live())

    def on_step(self, index: int) -> ProgressFn | None:
        steps = [fn for job in self.live() if (fn := job.progress.for_pass(index)) is not None]
        if not steps:
            return None

        def step(i: int, total: int) -> None:
            for fn in steps:
                fn(i, total)

        return step


def _output_area(plan: GenerationPlan) -> int:
    width, height = output_size(plan.params, plan.traits.latent_scale)
    return width * height * plan.params.batch_size


def out_of_memory_message(width: int, height: int, images: int, fitted: int | None) -> str:
    """What to tell a user whose job ran out of memory: a batch, else a size, that should fit. `fitted` is the
    most pixels (summed over images) this engine has made with the model at once; without it, half of this job."""
    asked = width * height * images
    budget = fitted if fitted is not None and fitted < asked else asked // 2
    what = f"The GPU ran out of memory making {images} image(s) at {width}x{height}"
    if images > 1 and budget >= width * height:
        return f"{what}; a batch of {budget // (width * height)} at that size should fit."
    per_image = budget if images > 1 else budget / images
    scale = math.sqrt(per_image / (width * height))
    fit_w, fit_h = (max(64, int(side * scale) // 64 * 64) for side in (width, height))
    return f"{what}; 1 image at {fit_w}x{fit_h} should fit."


class DiffusersEngine:
    """Runs jobs on the pipelines its `ModelLoader` keeps. Not thread-safe: one worker thread owns it.

    The LoRA library, the embeddings, the VAE folder and the blob store are shared objects (one of each for every
    device's engine); left out, each gets its own (the built-in LoRAs, no embeddings or VAEs, blobs in the
    registry's cache).
    """

    def __init__(
        self,
        registry: ModelRegistry,
        device: str = "auto",
        *,
        max_loaded: int = 2,
        memory_budget: int | None = None,
        speed: SpeedOptions | None = None,
        loras: LoraLibrary | None = None,
        embeddings: EmbeddingDB | None = None,
        vaes: VaeLibrary | None = None,
        blobs: BlobStore | None = None,
        upscalers: UpscalerLibrary | None = None,
        detectors: DetectorLibrary | None = None,
        taggers: TaggerLibrary | None = None,
        flux_modules: FluxModules | None = None,
    ) -> None:
        self.registry = registry
        self.loras = loras or LoraLibrary.with_builtins([], registry.hashes)
        self.vaes = vaes or VaeLibrary([], registry.hashes)
        self.blobs = blobs or BlobStore(registry.cache_dir / "blobs")
        self._layers: dict[str, LayerShapes] = {}
        self._fitted: dict[str, int] = {}  # model -> the most output pixels made at once (see out_of_memory)
        self.loader = ModelLoader(
            registry,
            device,
            max_loaded=max_loaded,
            memory_budget=memory_budget,
            embeddings=embeddings or EmbeddingDB([]),
            speed=speed,
            flux_modules=flux_modules,
        )
        self.device = self.loader.device
        self.upscalers = UpscalerModels(upscalers or UpscalerLibrary([]), self.device)
        self.detectors = DetectorModels(detectors or DetectorLibrary([]), self.device)
        self.taggers = TaggerModels(taggers or TaggerLibrary([]), self.device)

    def load(self, name: str) -> LoadedModel:
        """The pipeline for a model name, from the cache when loaded before (no reload on switching back)."""
        return self.loader.load(name)

    def plan(self, params: GenerationParams) -> GenerationPlan:
        return self.registry.plan(params)

    def warm_up(self, model: str, should_stop: CancelledFn | None = None) -> None:
        """Load `model` now, and with a compiled UNet compile it for every bucketed size (and for a batch, so
        that batches reuse the graph), before the first user waits for it. Runs on the worker thread while the bot
        connects."""
        speed = self.loader.speed
        started = time.perf_counter()
        if speed.compile == "off":
            self.load(model)
            log.info("loaded %s at start-up in %.1f s", model, time.perf_counter() - started)
            return
        # One image (2 UNet rows), two (4 rows: batches turn dynamic), and a prompt and negative of different
        # lengths (separate calls of 1 row each): every shape a job can give.
        shapes = [(1, ""), (2, ""), (1, " ".join(["warm-up"] * 80))]
        for width, height in speed.compile_sizes:
            for batch, negative in shapes:
                params = GenerationParams(
                    prompt="warm-up", negative_prompt=negative, model=model, seed=0, steps=2, sampler="Euler",
                    width=width, height=height, batch_size=batch,
                )  # fmt: skip
                self.generate(params, is_cancelled=should_stop)
        log.info(
            "warmed up %s for %d size(s) in %.0f s", model, len(speed.compile_sizes), time.perf_counter() - started
        )

    # -- generation -------------------------------------------------------------------------------------------

    def generate(
        self,
        job: GenerationPlan | GenerationParams,
        *,
        on_step: ProgressFn | None = None,
        is_cancelled: CancelledFn | None = None,
        on_preview: PreviewFn | None = None,
    ) -> list[RawImage]:
        """Run one job (its plan, or params to plan now): one decoded image per batch item, each with its seed
        and parameter text.

        `on_preview(step, total, source)` follows each `on_step`; `source.render()` (on this thread) makes a small
        image of the current denoised estimate. Without `on_preview` nothing is recorded for previews at all.
        """
        plan = job if isinstance(job, GenerationPlan) else self.plan(job)
        [outcome] = self.generate_batch([plan], [JobHooks(on_step, is_cancelled, on_preview)])
        if isinstance(outcome, EaselError):
            raise outcome
        return outcome

    def generate_batch(
        self, plans: Sequence[GenerationPlan], hooks: Sequence[JobHooks]
    ) -> list[list[RawImage] | EaselError]:
        """Run compatible jobs (equal `batch_key`s) as one batch: per job, its images or why it has none (its own
        bad input, a cancel, a diverged sampler). An error that is the whole batch's is raised."""
        if len({plan.batch_key() for plan in plans}) > 1:
            raise ValueError("a batch holds only jobs with equal batch keys")
        if plans[0].params.is_extras:
            return [self._extras(plan, hook) for plan, hook in zip(plans, hooks, strict=True)]
        if plans[0].params.is_describe:
            return [self._describe(plan, hook) for plan, hook in zip(plans, hooks, strict=True)]
        lead = plans[0].params
        area = sum(_output_area(plan) for plan in plans)
        try:
            with torch.inference_mode():
                if lead.is_detail_only:
                    return [self._detail_only(plan, hook) for plan, hook in zip(plans, hooks, strict=True)]
                outcomes = self._generate(plans, hooks)
                outcomes = [
                    self._detail(plan, hook, outcome)
                    if plan.params.detailers and isinstance(outcome, list)
                    else outcome
                    for plan, hook, outcome in zip(plans, hooks, outcomes, strict=True)
                ]
            if any(not isinstance(outcome, EaselError) for outcome in outcomes):
                self._fitted[lead.model] = max(self._fitted.get(lead.model, 0), area)
            return outcomes
        except EaselError:
            raise
        except torch.cuda.OutOfMemoryError as err:
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()  # what the failed job held goes back, for the next one
            images = sum(plan.params.batch_size for plan in plans)
            width, height = output_size(lead, plans[0].traits.latent_scale)
            log.warning("out of memory: %s, %dx%d x %d image(s)", lead.model, width, height, images)
            message = out_of_memory_message(width, height, images, self._fitted.get(lead.model))
            raise OutOfMemoryError(message) from err
        except Exception as err:
            log.exception("generation failed")
            raise GenerationFailedError(f"Generation failed: {short_reason(err)}") from err

    def _generate(
        self,
        plans: Sequence[GenerationPlan],
        hooks: Sequence[JobHooks],
        sources: tuple[Image.Image, Image.Image] | None = None,
    ) -> list[list[RawImage] | EaselError]:
        # 1. The model, its VAE, and the LoRAs the plans call for (active at their weights, the others off).
        lead = plans[0]
        loaded = self.load(lead.params.model)
        self._check_traits(lead, loaded)
        vae_file = self.vaes.check(lead.params.vae, loaded.entry.family) if lead.params.vae else None
        vae = self.loader.vae(loaded, vae_file) if vae_file is not None else loaded.pipe.vae
        loras = [(self.loras.resolve(call.name), call) for call in lead.loras]
        for lora, _ in loras:
            misfit = lora.misfit(loaded.entry.family, loaded.entry.context_width) or lora.layer_misfit(
                self._layer_shapes(loaded)
            )
            if misfit is not None:
                raise InvalidParamsError(misfit + ".")
        set_tiling((denoiser_module(loaded.pipe), vae), lead.params.tiling)
        if loaded.patched is not None:
            patch_loras(loaded.pipe, loaded.patched, loras)
        else:
            apply_loras(loaded.pipe, loaded.adapters, loras)
        loaded.family.take_used_embeddings()  # forget what an earlier (perhaps failed) job encoded

        # 2. Each sampling pass: txt2img or img2img, then the hires pass on the upscaled result.
        denoised = Denoised() if any(h.on_preview is not None for h in hooks) else None
        run = _Run(
            [
                _Job(plan, hook, _PassProgress(hook.on_step, plan.segments, hook.on_preview), images=sources)
                for plan, hook in zip(plans, hooks, strict=True)
            ],
            loaded,
            vae,
            vae_file,
            loras,
            lora_state=";".join(f"{lora.name}:{call.te_multiplier}" for lora, call in loras),
            denoised=denoised,
        )
        latents: torch.Tensor | None = None
        for index, sampling_pass in enumerate(lead.passes):
            latents = self._sample_pass(run, index, sampling_pass, latents)
        assert latents is not None

        # 3. Decode; a diverged sampler gives NaN: say so instead of returning a black image.
        images = self._decode(run, latents)

        # 4. Parameter text per image (each image carries its own seed), for each job that is not cancelled.
        return [self._outcome(run, job, images) for job in run.jobs]

    def _check_traits(self, plan: GenerationPlan, loaded: LoadedModel) -> None:
        scale = int(loaded.pipe.vae_scale_factor)
        if plan.traits.latent_scale != scale:
            raise GenerationFailedError(
                f"Model {loaded.entry.name!r} has a latent scale of {scale}, but the job was planned for "
                f"{plan.traits.latent_scale}; refresh the models and try again."
            )
        if plan.params.width % scale or plan.params.height % scale:
            raise InvalidParamsError(f"Width and height must be multiples of {scale} for this model.")

    def _sample_pass(
        self, run: _Run, index: int, sampling_pass: SamplingPass, previous: torch.Tensor | None
    ) -> torch.Tensor:
        """One pass: each job's conditioning (a job whose prompt cannot be encoded leaves the batch), the start
        latents (none, the init images, or the upscaled previous pass), the noise, then the sampler."""
        rows = [(job, self._row_conds(run, job, index)) for job in run.live()]
        survivors = [job for job, conds in rows if conds is not None]
        if not survivors:
            raise next(job.error for job in run.jobs if job.error is not None)
        keep = torch.cat([torch.arange(job.start, job.stop) for job in survivors]) if previous is not None else None
        if previous is not None and keep is not None and len(keep) != previous.shape[0]:
            previous = previous[keep.to(previous.device)]
        self._place_rows(run)
        init_latents = self._start_latents(run, sampling_pass, previous)
        if init_latents is not None and sampling_pass.run_steps == 0:
            return init_latents  # strength 0 changes nothing, as in A1111
        lead = run.lead
        jobs = [conds for _, conds in rows if conds is not None]
        cfg = pass_cfg(lead.params, sampling_pass.kind)
        distilled = pass_distilled_cfg(lead.params, sampling_pass.kind)
        guidance = Guidance(
            unet=run.loaded.family.unet_fn(*sampling_pass.conditioned_on, guidance=distilled),
            jobs=jobs,
            cfg_scale=cfg,
            image_cond=self._image_conditioning(run, sampling_pass),
            # Forge's shortcut at CFG 1 (Flux's default): the negative prompt is not run, the prediction is the
            # prompt's. Easel's SD models keep A1111's way, which runs both.
            cond_only=isinstance(run.loaded.family, FluxFamily) and cond_only(jobs, cfg),
        )
        rngs = [self._image_rng(run, job.plan, sampling_pass) for job in run.live()]
        rng: ImageRNG | BatchRNG = rngs[0] if len(rngs) == 1 else BatchRNG(rngs)
        noise = rng.first().to(self.device)
        multiplier = lead.params.initial_noise_multiplier
        if sampling_pass.kind == "img2img" and multiplier != 1.0:
            noise = noise * multiplier  # A1111's "Noise multiplier" for img2img: the first noise only
        latents: torch.Tensor = run_pass(
            PassRun(
                sampler=sampling_pass.sampler,
                schedule=sampling_pass.schedule,
                scheduler_config=run.loaded.scheduler_config,
                guidance=guidance,
                noise=noise,
                rng=rng,
                schedule_steps=sampling_pass.schedule_steps,
                run_steps=sampling_pass.run_steps,
                init_latents=init_latents,
                on_step=run.on_step(index),
                is_cancelled=run.all_cancelled,
                denoised=run.denoised,
                schedule_options=ScheduleOptions(sdxl=lead.traits.family == "sdxl"),
                blend=run.blend if sampling_pass.kind == "img2img" else None,
            )
        )
        if sampling_pass.kind == "img2img" and run.blend is not None:  # A1111's final blend, after sampling
            repaint, init = run.blend
            latents = latents * repaint + init * (1 - repaint)
        return latents

    def _image_conditioning(self, run: _Run, sampling_pass: SamplingPass) -> torch.Tensor | None:
        """An inpainting UNet's extra input, as A1111 builds it (Conditional mask weight 1): for an img2img pass the
        job's mask (rounded; all ones without one) and its image with the masked part made mid-grey, VAE-encoded;
        for text-to-image and hires passes an all-ones mask and a mid-grey image. A Flux.1 Fill transformer takes the
        masked image's latents and the mask as 64 channels (each 8x8 block of pixels), as diffusers' FluxFillPipeline
        builds them; packed with the latents into its 384-wide input."""
        fill = run.loaded.entry.family == "flux" and int(run.loaded.pipe.transformer.config.in_channels) == 384
        if not fill and (run.loaded.entry.family == "flux" or int(run.loaded.pipe.unet.config.in_channels) != 9):
            return None
        scale = run.lead.traits.latent_scale
        size = (sampling_pass.height // scale, sampling_pass.width // scale)
        rows = []
        for job in run.live():
            if sampling_pass.kind == "img2img" and job.inpaint is not None:
                image = torch.from_numpy(np.asarray(job.inpaint.image.convert("RGB"), dtype=np.float32) / 255.0)
                mask_pixels = np.asarray(job.inpaint.mask.convert("L"), dtype=np.float32) / 255.0
                mask = torch.from_numpy(mask_pixels).round()[None, None]
            else:  # no mask: all of it is to be drawn, from nothing (mid-grey)
                image = torch.full((sampling_pass.height, sampling_pass.width, 3), 0.5)
                mask = torch.ones(1, 1, sampling_pass.height, sampling_pass.width)
            source = image.permute(2, 0, 1)[None] * 2 - 1
            masked = (source * (1 - mask) + 1) / 2  # lerp(source, source * (1 - mask), 1), back in [0, 1]
            latents = encode(run.vae, masked.to(self.device))
            if fill:
                blocks = fill_mask(mask).to(latents.device, latents.dtype)
                rows.append(torch.cat([latents, blocks], dim=1).repeat(job.plan.params.batch_size, 1, 1, 1))
                continue
            small = F.interpolate(mask, size=size).to(latents.device, latents.dtype)
            rows.append(torch.cat([small, latents], dim=1).repeat(job.plan.params.batch_size, 1, 1, 1))
        return torch.cat(rows)

    def _place_rows(self, run: _Run) -> None:
        """Give each live job its rows of the batch, in order, and its preview of them."""
        start = 0
        for job in run.live():
            job.start, job.stop = start, start + job.plan.params.batch_size
            start = job.stop
            if run.denoised is not None:
                job.progress.preview = LatentPreview(
                    _rows_of(run.denoised, job.start, job.stop), run.vae, job.plan.traits.latent_scale
                )

    def _start_latents(
        self, run: _Run, sampling_pass: SamplingPass, previous: torch.Tensor | None
    ) -> torch.Tensor | None:
        vae, scale = run.vae, run.lead.traits.latent_scale
        if sampling_pass.kind == "txt2img":
            return None
        if sampling_pass.kind == "img2img":
            init = torch.cat([self._init_latents(vae, job, scale) for job in run.live()])
            run.blend = _batch_blend(run.live(), init)
            return init
        assert previous is not None and sampling_pass.upscale is not None
        upscale = sampling_pass.upscale
        latents: torch.Tensor
        if upscale.latent:
            latents = upscale_latents(previous, (upscale.height // scale, upscale.width // scale), upscale.upscaler)
        else:  # A1111's image path: 8-bit pixels through the upscaler (a model, or PIL's Lanczos / Nearest)
            pixels = self._decode_pixels(run, previous)
            images = hires_images(
                pixels, upscale.width, upscale.height, upscale.upscaler, self.upscalers, run.all_cancelled
            )
            latents = encode(vae, images.to(self.device))
        if (upscale.width, upscale.height) != (sampling_pass.width, sampling_pass.height):
            latents = crop_latents(latents, sampling_pass.height // scale, sampling_pass.width // scale)
        return latents

    def _row_conds(self, run: _Run, job: _Job, index: int) -> RowConds | None:
        """A job's conditioning for pass `index`, or None (and the job's error set) when its prompt cannot be
        encoded, e.g. it names a refused embedding: that job fails alone."""
        family, params = run.loaded.family, job.plan.params
        conditioning: PassConditioning = job.plan.passes[index].conditioning

        def encoded(schedule: TextSchedule, negative: bool) -> Schedule:
            texts = [text for _, text in schedule]
            conds = family.encode_schedule(texts, params.clip_skip, run.lora_state, negative=negative)
            return [(end, cond) for (end, _), cond in zip(schedule, conds, strict=True)]

        try:
            rows = RowConds(
                rows=params.batch_size,
                conds=[(encoded(part.schedule, False), part.weight) for part in conditioning.parts],
                uncond=encoded(conditioning.negative, True),
            )
        except EaselError as err:
            job.error = err
            return None
        finally:
            job.used.update((e.name, e) for e in family.take_used_embeddings())
        return rows

    def _image_rng(self, run: _Run, plan: GenerationPlan, sampling_pass: SamplingPass) -> ImageRNG:
        """One generator per image, variation seeds slerped in, seed resize, A1111's RNG source."""
        params, scale = plan.params, plan.traits.latent_scale
        resize = None
        if params.seed_resize_from_w > 0 and params.seed_resize_from_h > 0:
            resize = (params.seed_resize_from_h // scale, params.seed_resize_from_w // scale)
        channels = int(run.loaded.pipe.vae.config.latent_channels)  # an inpainting UNet takes 9: the noise is 4
        return ImageRNG(
            (channels, sampling_pass.height // scale, sampling_pass.width // scale),
            params.image_seeds(),
            subseeds=params.image_subseeds(),
            subseed_strength=params.subseed_strength,
            seed_resize_from=resize,
            source=params.rng,
            device=self.device,
            ensd=params.ensd,
        )

    def _init_latents(self, vae: Any, job: _Job, scale: int) -> torch.Tensor:
        """A job's init latents, one row per image. With a mask, A1111's inpainting preparation: the image cropped,
        resized and filled, the latent mask, and the masked content in latent space (noise or nothing)."""
        params = job.plan.params
        assert params.init_image is not None
        if job.images is not None:  # a detailer region: the image so far and the region's mask
            prepared = prepare(job.images[0], Image.fromarray(np.asarray(job.images[1])), mask_options(params),
                               params.width, params.height)  # fmt: skip
            image = prepared.image
            job.inpaint = None if prepared.blank else prepared
            return self._encode_init(vae, job, image)
        with Image.open(io.BytesIO(self.blobs.get(params.init_image))) as opened:
            if params.mask is None:
                image = opened.convert("RGB").resize((params.width, params.height), Image.Resampling.LANCZOS)
            else:
                with Image.open(io.BytesIO(self.blobs.get(params.mask))) as mask:
                    prepared = prepare(opened, mask, mask_options(params), params.width, params.height)
                image = prepared.image
                job.inpaint = None if prepared.blank else prepared
        return self._encode_init(vae, job, image)

    def _encode_init(self, vae: Any, job: _Job, image: Image.Image) -> torch.Tensor:
        params = job.plan.params
        tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
        latents = encode(vae, tensor.to(self.device)).repeat(params.batch_size, 1, 1, 1)
        if job.inpaint is None:
            return latents
        height, width = latents.shape[-2:]
        repaint = torch.from_numpy(job.inpaint.latent_mask(width, height))[None, None].expand_as(latents)
        repaint = repaint.to(latents.device, latents.dtype)
        content = MASKED_CONTENT[params.inpainting_fill]
        if content == LATENT_NOISE:  # A1111: fresh noise from each image's seed, in the masked area
            noise = ImageRNG(tuple(latents.shape[1:]), params.image_seeds(), source=params.rng).first()  # type: ignore[arg-type]
            latents = latents * (1 - repaint) + noise.to(latents.device, latents.dtype) * repaint
        elif content == LATENT_NOTHING:
            latents = latents * (1 - repaint)
        job.blend = (repaint, latents)
        return latents

    def _extras(self, plan: GenerationPlan, hook: JobHooks) -> list[RawImage] | EaselError:
        """An upscale without diffusion (A1111's Extras): the image keeps its parameter text, and the upscale's
        fields go in an `extras` chunk, as A1111 writes them."""
        params = plan.params
        assert params.init_image is not None and params.extras_upscaler is not None
        data = self.blobs.get(params.init_image)
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("RGB")
        source_text = read_infotext(data) or ""

        def on_tile(done: int, total: int) -> None:
            if hook.on_step is not None:
                hook.on_step(done, total)

        try:
            upscaled = extras_upscale(
                image, params.extras_scale(), params.extras_upscaler, self.upscalers, on_tile, hook.is_cancelled
            )
        except EaselError as err:
            return err
        except torch.cuda.OutOfMemoryError:
            raise
        except (OSError, ValueError, RuntimeError) as err:
            return GenerationFailedError(f"Upscale failed: {short_reason(err)}")
        return [RawImage(upscaled, params.seed, source_text, extras_text(params))]

    # -- the detailer (ADetailer's pass, after the sampling passes) --------------------------------------------

    def _detail(self, plan: GenerationPlan, hook: JobHooks, raws: list[RawImage]) -> list[RawImage] | EaselError:
        """Each image through the job's detailer tabs in order, each tab on the previous one's result."""
        detailed = []
        try:
            for index, raw in enumerate(raws):
                image, notes = raw.image, list(raw.notes)
                for tab_index in range(len(plan.params.detailers)):
                    image = self._detail_tab(plan, hook, tab_index, index, len(raws), image, notes)
                detailed.append(dataclasses.replace(raw, image=image, notes=tuple(notes)))
        except EaselError as err:
            return err
        return detailed

    def _detail_tab(
        self, plan: GenerationPlan, hook: JobHooks, tab_index: int, index: int, images: int, image: Image.Image,
        notes: list[str],
    ) -> Image.Image:  # fmt: skip
        """One tab on one image (ADetailer's `_postprocess_image_inner`): detect, build the masks, then one "only
        masked" inpaint per mask, each on the previous result, seeds counting up from the image's."""
        params, tab = plan.params, plan.params.detailers[tab_index]
        which = f"the {ordinal(tab_index + 1)} detailer ({tab.model})"
        on_image = f" on image {index + 1}" if images > 1 else ""
        if hook.is_cancelled is not None and hook.is_cancelled():
            raise Cancelled("The job was cancelled.")
        found = self.detectors.detect(tab.model, image, tab.confidence)
        masks = region_masks(found, tab) if len(found) else []
        if masks and params.mask is not None and not params.inpaint_full_res:  # ADetailer keeps to the job's mask
            masks = touching(self._user_mask(params, image.size), masks)
        if not masks:
            why = "found nothing" if not len(found) else "found nothing within its mask settings"
            notes.append(f"{which[0].upper()}{which[1:]} {why}{on_image}; that part of the image was left as it was.")
            return image
        if len(masks) > MAX_REGIONS:
            notes.append(f"{which[0].upper()}{which[1:]} found {len(masks)} regions{on_image}; the first "
                         f"{MAX_REGIONS} were detailed.")  # fmt: skip
            masks = masks[:MAX_REGIONS]
        prompts = tab_prompts(tab.prompt, params.prompt)
        negatives = tab_prompts(tab.negative_prompt, params.negative_prompt)
        segment = (0 if params.is_detail_only else len(plan.passes)) + tab_index
        for region, mask in enumerate(masks):
            prompt = region_prompt(prompts, region)
            if is_skip(prompt):
                continue
            region_params = detail_params(
                params, tab, prompt=prompt, negative=region_prompt(negatives, region), image=index, region=region
            )
            part = (index * len(masks) + region, images * len(masks))
            region_hooks = JobHooks(
                _segment_steps(hook.on_step, segment, plan.segments, part),
                hook.is_cancelled,
                _segment_previews(hook.on_preview, segment, plan.segments, part),
            )
            [outcome] = self._generate([self.plan(region_params)], [region_hooks], (image, Image.fromarray(mask)))
            if isinstance(outcome, EaselError):
                raise outcome
            image = outcome[0].image
        return image

    def _user_mask(self, params: GenerationParams, size: tuple[int, int]) -> np.ndarray:
        """An inpaint job's own mask as ADetailer's `get_image_mask` reads it: binary, inverted for "inpaint not
        masked", resized to the image (Lanczos)."""
        with Image.open(io.BytesIO(self.blobs.get(str(params.mask)))) as opened:
            mask = binary_mask(opened)
        if params.inpainting_mask_invert:
            mask = ImageOps.invert(mask)
        return np.asarray(mask.resize(size, Image.Resampling.LANCZOS))

    def _detail_only(self, plan: GenerationPlan, hook: JobHooks) -> list[RawImage] | EaselError:
        """Fix faces: the detailer alone on a finished image; it keeps its parameter text, with the detailer's
        fields added before `Version` (where A1111 would have written them had ADetailer run with the job)."""
        params = plan.params
        fields = ", ".join(f"{key}: {quote(value)}" for key, value in detailer_fields(params.detailers).items())
        raws = []
        for digest, seed in zip(params.detail_images, params.image_seeds(), strict=False):
            data = self.blobs.get(digest)
            with Image.open(io.BytesIO(data)) as opened:
                image = opened.convert("RGB")
            text = read_infotext(data) or ""
            head, version, tail = text.rpartition(", Version: ")
            text = f"{head}, {fields}{version}{tail}" if version else f"{text}, {fields}" if text else fields
            raws.append(RawImage(image, seed, text))
        return self._detail(plan, hook, raws)

    def _describe(self, plan: GenerationPlan, hook: JobHooks) -> list[RawImage] | EaselError:
        """`/describe`: the image through the tagger; the result is the image itself, with its tags as the text."""
        params = plan.params
        assert params.init_image is not None and params.tagger is not None
        if hook.is_cancelled is not None and hook.is_cancelled():
            return Cancelled("The job was cancelled.")
        with Image.open(io.BytesIO(self.blobs.get(params.init_image))) as opened:
            opened.load()
            image = opened.copy()
        try:
            found = self.taggers.describe(params.tagger, image, params.tag_threshold, params.character_threshold)
        except EaselError as err:
            return err
        except (OSError, ValueError, RuntimeError) as err:
            return GenerationFailedError(f"The tagger failed: {short_reason(err)}")
        if hook.on_step is not None:
            hook.on_step(1, 1)
        return [
            RawImage(image.convert("RGBA" if "A" in image.getbands() else "RGB"), 0, found.prompt(), description=found)
        ]

    def _layer_shapes(self, loaded: LoadedModel) -> LayerShapes:
        """The loaded model's layer shapes (what a LoRA must fit), once per model."""
        name = loaded.entry.name
        if name not in self._layers:
            pipe = loaded.pipe
            self._layers[name] = {
                key: shape
                for component in COMPONENTS
                if getattr(pipe, component, None) is not None
                for key, shape in module_shapes(component, getattr(pipe, component)).items()
            }
        return self._layers[name]

    def _decode_pixels(self, run: _Run, latents: torch.Tensor) -> torch.Tensor:
        """Decode in the VAE's dtype; where that gives NaN (SDXL's VAE overflows in fp16), decode again in fp32 and
        keep the VAE in fp32 from then on, as A1111's "Automatically revert VAE to 32-bit floats" does. A decode that
        does not fit in memory is done again in tiles (seams blended: not bit-identical, but an image)."""
        try:
            pixels = decode(run.vae, latents)
        except torch.cuda.OutOfMemoryError:
            log.warning("model %s: decoding %s latents ran out of memory; decoding in tiles", run.loaded.entry.name,
                        tuple(latents.shape))  # fmt: skip
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()
            run.vae.enable_tiling()
            try:
                pixels = decode(run.vae, latents)
            finally:
                run.vae.disable_tiling()
        if torch.isnan(pixels).any() and run.vae.dtype != torch.float32:
            log.warning("model %s: the VAE gave NaN in %s; decoding in float32 from now on", run.loaded.entry.name,
                        run.vae.dtype)  # fmt: skip
            run.vae.to(torch.float32)
            pixels = decode(run.vae, latents)
        return pixels

    def _decode(self, run: _Run, latents: torch.Tensor) -> torch.Tensor:
        if run.all_cancelled():
            raise Cancelled("The job was cancelled.")
        return self._decode_pixels(run, latents)

    def _outcome(self, run: _Run, job: _Job, pixels: torch.Tensor) -> list[RawImage] | EaselError:
        """A job's images with their parameter text, or why it has none."""
        if job.error is not None:
            return job.error
        if job.cancelled():
            return Cancelled("The job was cancelled.")
        own = pixels[job.start : job.stop]
        if torch.isnan(own).any():
            return GenerationFailedError(
                f"The image came out as NaN (sampler {job.plan.sampler.name!r} diverged or the VAE overflowed) and "
                "was not sent as a black square; try another sampler, more steps or another VAE."
            )
        images: list[Any] = run.loaded.pipe.numpy_to_pil(own.numpy())
        if job.inpaint is not None:  # the original pixels back outside the mask (and an "only masked" crop in place)
            images = [finish(image, job.inpaint) for image in images]
        params, loaded = job.plan.params, run.loaded
        extra = dict(job.plan.infotext_fields)
        if loaded.entry.ztsnr:  # written first of the extras, as A1111's apply_alpha_schedule_override adds it early
            extra = {"Noise Schedule": ZERO_TERMINAL_SNR, **extra}
        if run.vae_file is not None:
            extra["VAE hash"] = self.vaes.short_hash(run.vae_file)
        if run.loras:
            hashes = [(lora.alias or lora.name, self.loras.short_hash(lora)) for lora, _ in run.loras]
            extra["Lora hashes"] = infotext_hashes(list(dict.fromkeys(hashes)))
        extra["TI hashes"] = ti_hashes(job.used.values())
        if isinstance(loaded.family, FluxFamily):
            if loaded.family.distilled:  # Forge writes it for dev models only (schnell ignores it)
                extra["Distilled CFG Scale"] = ui_number(params.distilled_cfg_scale)
                if params.enable_hr:
                    extra["Hires Distilled CFG Scale"] = ui_number(pass_distilled_cfg(params, "hires"))
            extra.update({f"Module {i}": name for i, name in enumerate(loaded.modules, start=1)})
        # A1111 writes it for every job of an inpainting model
        if run.loaded.entry.family != "flux" and int(run.loaded.pipe.unet.config.in_channels) == 9:
            extra["Conditional mask weight"] = "1.0"
        if params.init_image is not None and params.initial_noise_multiplier != 1.0:  # set in A1111's sample()
            extra["Noise multiplier"] = f"{params.initial_noise_multiplier:g}"
        seeds = params.image_seeds()
        return [
            RawImage(
                image=image,
                seed=seeds[i],
                infotext=create_infotext(
                    params, model_name=loaded.entry.name, model_hash=loaded.model_hash, image_index=i, extra=extra
                ),
            )
            for i, image in enumerate(images)
        ]


def fill_mask(mask: torch.Tensor) -> torch.Tensor:
    """A (1, 1, H, W) mask as Flux.1 Fill reads it: 64 channels at the latent's size, channel 8 * dy + dx holding
    pixel (8y + dy, 8x + dx) (diffusers' `FluxFillPipeline.prepare_mask_latents`)."""
    _, _, height, width = mask.shape
    blocks = mask[:, 0].reshape(1, height // 8, 8, width // 8, 8).permute(0, 2, 4, 1, 3)
    return blocks.reshape(1, 64, height // 8, width // 8)


def denoiser_module(pipe: Any) -> Any:
    """The pipeline's denoising network: an SD model's UNet, a Flux model's transformer."""
    unet = getattr(pipe, "unet", None)
    return unet if unet is not None else pipe.transformer


def set_tiling(models: Sequence[Any], tiling: bool) -> None:
    """A1111's Tiling (`sd_hijack.apply_circular`): every 2-D convolution of the UNet and the VAE pads circularly, so
    the image wraps around at its edges; switched back for the next job that does not tile."""
    mode: Literal["zeros", "circular"] = "circular" if tiling else "zeros"
    for model in models:
        if getattr(model, "_easel_padding", "zeros") == mode:
            continue
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.padding_mode = mode
        model._easel_padding = mode


def _batch_blend(jobs: Sequence[_Job], init: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The batch's latent mask and init latents for A1111's blend; a job without a mask repaints everything (its
    rows blend to the sampler's own output). None when no job has a mask."""
    if all(job.blend is None for job in jobs):
        return None
    masks, inits, row = [], [], 0
    for job in jobs:
        rows = job.plan.params.batch_size
        if job.blend is None:
            masks.append(torch.ones_like(init[row : row + rows]))
            inits.append(init[row : row + rows])
        else:
            masks.append(job.blend[0])
            inits.append(job.blend[1])
        row += rows
    return torch.cat(masks), torch.cat(inits)


def _segment_steps(on_step: ProgressFn | None, segment: int, segments: int, part: tuple[int, int]) -> ProgressFn | None:
    """A detailer region's steps as part `part[0]` of `part[1]` of segment `segment` of the job's progress bar."""
    if on_step is None:
        return None

    def step(i: int, total: int) -> None:
        done, count = part
        on_step(segment * total * count + done * total + i, segments * total * count)

    return step


def _segment_previews(
    on_preview: PreviewFn | None, segment: int, segments: int, part: tuple[int, int]
) -> PreviewFn | None:
    if on_preview is None:
        return None

    def preview(i: int, total: int, source: Any) -> None:
        done, count = part
        on_preview(segment * total * count + done * total + i, segments * total * count, source)

    return preview


def _rows_of(denoised: Denoised, start: int, stop: int) -> Callable[[], torch.Tensor | None]:
    def rows() -> torch.Tensor | None:
        latest = denoised.get()
        return None if latest is None else latest[start:stop]

    return rows


class _PassProgress:
    """Progress across the first and hires passes as one bar: pass k of n maps to [k/n, (k+1)/n]; each step is
    followed by a preview offer when someone listens for previews."""

    def __init__(
        self,
        on_step: ProgressFn | None,
        passes: int,
        on_preview: PreviewFn | None = None,
        preview: LatentPreview | None = None,
    ) -> None:
        self.on_step = on_step
        self.passes = passes
        self.on_preview = on_preview
        self.preview = preview

    def for_pass(self, index: int) -> ProgressFn | None:
        if self.on_step is None and self.on_preview is None:
            return None
        report, offer, preview = self.on_step, self.on_preview, self.preview

        def step(i: int, total: int) -> None:
            done, overall = index * total + i, total * self.passes
            if report is not None:
                report(done, overall)
            if offer is not None and preview is not None:
                offer(done, overall, preview)

        return step
