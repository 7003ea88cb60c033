"""The diffusers adapter: executes a job's `GenerationPlan` on a loaded model, reporting progress and honouring
cancellation.

Runs only on the executor's worker thread, which owns torch. `_generate` reads as the numbered steps of a diffusers
pipeline: model, LoRAs, then each sampling pass (condition, noise, sample), decode, parameter text. Everything
those steps decide was decided by the plan; a model family (`engine.families`) supplies the conditioning and the
UNet call.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine.blobs import BlobStore
from engine.denoise import (
    Denoised,
    Guidance,
    PassRun,
    Schedule,
    crop_latents,
    decode,
    encode,
    run_pass,
    upscale_latents,
)
from engine.embeddings import EmbeddingDB, ti_hashes
from engine.errors import Cancelled, EaselError, GenerationFailedError, InvalidParamsError, short_reason
from engine.infotext import create_infotext
from engine.ksampling import ScheduleOptions
from engine.loras import LoraFile, LoraLibrary, apply_loras, infotext_hashes
from engine.models.loader import LoadedModel, ModelLoader
from engine.models.registry import ModelRegistry
from engine.params import GenerationParams
from engine.plan import GenerationPlan, PassConditioning, SamplingPass, TextSchedule
from engine.previews import LatentPreview, PreviewFn
from engine.prompts.extra_networks import LoraCall
from engine.seeds import ImageRNG
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


@dataclass
class _Run:
    """One job on one loaded model, as `_generate` carries it from step to step."""

    plan: GenerationPlan
    loaded: LoadedModel
    vae: Any  # the job's VAE: the checkpoint's own or one from the VAE folder
    vae_file: VaeFile | None
    loras: list[tuple[LoraFile, LoraCall]]
    lora_state: str  # keys the conditioning cache: LoRAs change what the text encoder gives
    is_cancelled: CancelledFn | None
    progress: _PassProgress
    denoised: Denoised | None


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
        loras: LoraLibrary | None = None,
        embeddings: EmbeddingDB | None = None,
        vaes: VaeLibrary | None = None,
        blobs: BlobStore | None = None,
    ) -> None:
        self.registry = registry
        self.loras = loras or LoraLibrary.with_builtins([], registry.hashes)
        self.vaes = vaes or VaeLibrary([], registry.hashes)
        self.blobs = blobs or BlobStore(registry.cache_dir / "blobs")
        self.loader = ModelLoader(
            registry,
            device,
            max_loaded=max_loaded,
            memory_budget=memory_budget,
            embeddings=embeddings or EmbeddingDB([]),
        )
        self.device = self.loader.device

    def load(self, name: str) -> LoadedModel:
        """The pipeline for a model name, from the cache when loaded before (no reload on switching back)."""
        return self.loader.load(name)

    def plan(self, params: GenerationParams) -> GenerationPlan:
        return self.registry.plan(params)

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
        params = plan.params
        try:
            with torch.inference_mode():
                return self._generate(plan, on_step, is_cancelled, on_preview)
        except EaselError:
            raise
        except torch.cuda.OutOfMemoryError as err:
            raise GenerationFailedError(
                f"The GPU ran out of memory at {params.width}x{params.height} with batch {params.batch_size}; "
                "try a smaller size or batch."
            ) from err
        except Exception as err:
            log.exception("generation failed")
            raise GenerationFailedError(f"Generation failed: {short_reason(err)}") from err

    def _generate(
        self,
        plan: GenerationPlan,
        on_step: ProgressFn | None,
        is_cancelled: CancelledFn | None,
        on_preview: PreviewFn | None,
    ) -> list[RawImage]:
        # 1. The model, its VAE, and the LoRAs the plan calls for (active at their weights, the others off).
        loaded = self.load(plan.params.model)
        self._check_traits(plan, loaded)
        vae_file = self.vaes.check(plan.params.vae, loaded.entry.family) if plan.params.vae else None
        vae = self.loader.vae(loaded, vae_file) if vae_file is not None else loaded.pipe.vae
        loras = [(self.loras.resolve(call.name), call) for call in plan.loras]
        for lora, _ in loras:
            misfit = lora.misfit(loaded.entry.family, loaded.entry.context_width)
            if misfit is not None:
                raise InvalidParamsError(misfit + ".")
        apply_loras(loaded.pipe, loaded.adapters, loras)
        loaded.family.take_used_embeddings()  # forget what an earlier (perhaps failed) job encoded

        # 2. Each sampling pass: txt2img or img2img, then the hires pass on the upscaled result.
        denoised = Denoised() if on_preview is not None else None
        preview = None
        if denoised is not None:
            preview = LatentPreview(denoised.get, vae, plan.traits.latent_scale)
        run = _Run(
            plan,
            loaded,
            vae,
            vae_file,
            loras,
            lora_state=";".join(f"{lora.name}:{call.te_multiplier}" for lora, call in loras),
            is_cancelled=is_cancelled,
            progress=_PassProgress(on_step, len(plan.passes), on_preview, preview),
            denoised=denoised,
        )
        latents: torch.Tensor | None = None
        for index, sampling_pass in enumerate(plan.passes):
            latents = self._sample_pass(run, index, sampling_pass, latents)
        assert latents is not None

        # 3. Decode; a diverged sampler gives NaN: say so instead of returning a black image.
        images = self._decode(run, latents)

        # 4. Parameter text per image (each image carries its own seed).
        return self._results(run, images)

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
        """One pass: its start latents (none, the init image, or the upscaled previous pass), its conditioning and
        noise, then the sampler."""
        init_latents = self._start_latents(run, sampling_pass, previous)
        if init_latents is not None and sampling_pass.run_steps == 0:
            return init_latents  # strength 0 changes nothing, as in A1111
        guidance = self._guidance(run, sampling_pass)
        rng = self._image_rng(run, sampling_pass)
        noise = rng.first().to(self.device)
        latents: torch.Tensor = run_pass(
            PassRun(
                sampler=run.plan.sampler,
                schedule=run.plan.schedule,
                scheduler_config=run.loaded.scheduler_config,
                guidance=guidance,
                noise=noise,
                rng=rng,
                schedule_steps=sampling_pass.schedule_steps,
                run_steps=sampling_pass.run_steps,
                init_latents=init_latents,
                on_step=run.progress.for_pass(index),
                is_cancelled=run.is_cancelled,
                denoised=run.denoised,
                schedule_options=ScheduleOptions(sdxl=run.plan.traits.family == "sdxl"),
            )
        )
        return latents

    def _start_latents(
        self, run: _Run, sampling_pass: SamplingPass, previous: torch.Tensor | None
    ) -> torch.Tensor | None:
        vae, scale = run.vae, run.plan.traits.latent_scale
        if sampling_pass.kind == "txt2img":
            return None
        if sampling_pass.kind == "img2img":
            return self._init_latents(vae, run.plan.params).repeat(run.plan.params.batch_size, 1, 1, 1)
        assert previous is not None and sampling_pass.upscale is not None
        upscale = sampling_pass.upscale
        latents: torch.Tensor
        if upscale.latent:
            latents = upscale_latents(previous, (upscale.height // scale, upscale.width // scale), upscale.upscaler)
        else:
            images = self._decode_pixels(run, previous).permute(0, 3, 1, 2)
            resample = "nearest" if upscale.upscaler == "Nearest" else "bicubic"
            size = (upscale.height, upscale.width)
            images = F.interpolate(images, size=size, mode=resample, antialias=resample != "nearest")
            latents = encode(vae, images.clamp(0, 1).to(self.device))
        if (upscale.width, upscale.height) != (sampling_pass.width, sampling_pass.height):
            latents = crop_latents(latents, sampling_pass.height // scale, sampling_pass.width // scale)
        return latents

    def _guidance(self, run: _Run, sampling_pass: SamplingPass) -> Guidance:
        family, params = run.loaded.family, run.plan.params

        def encoded(schedule: TextSchedule, negative: bool) -> Schedule:
            texts = [text for _, text in schedule]
            conds = family.encode_schedule(texts, params.clip_skip, run.lora_state, negative=negative)
            return [(end, cond) for (end, _), cond in zip(schedule, conds, strict=True)]

        conditioning: PassConditioning = sampling_pass.conditioning
        return Guidance(
            unet=family.unet_fn(sampling_pass.width, sampling_pass.height),
            conds=[(encoded(part.schedule, False), part.weight) for part in conditioning.parts],
            uncond=encoded(conditioning.negative, True),
            cfg_scale=params.cfg_scale,
        )

    def _image_rng(self, run: _Run, sampling_pass: SamplingPass) -> ImageRNG:
        """One generator per image, variation seeds slerped in, seed resize, A1111's RNG source."""
        params, scale = run.plan.params, run.plan.traits.latent_scale
        resize = None
        if params.seed_resize_from_w > 0 and params.seed_resize_from_h > 0:
            resize = (params.seed_resize_from_h // scale, params.seed_resize_from_w // scale)
        channels = int(run.loaded.pipe.unet.config.in_channels)
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

    def _init_latents(self, vae: Any, params: GenerationParams) -> torch.Tensor:
        from PIL import Image

        assert params.init_image is not None
        data = self.blobs.get(params.init_image)
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("RGB").resize((params.width, params.height), Image.Resampling.LANCZOS)
        tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
        return encode(vae, tensor.to(self.device))

    def _decode_pixels(self, run: _Run, latents: torch.Tensor) -> torch.Tensor:
        """Decode in the VAE's dtype; where that gives NaN (SDXL's VAE overflows in fp16), decode again in fp32 and
        keep the VAE in fp32 from then on, as A1111's "Automatically revert VAE to 32-bit floats" does."""
        pixels = decode(run.vae, latents)
        if torch.isnan(pixels).any() and run.vae.dtype != torch.float32:
            log.warning("model %s: the VAE gave NaN in %s; decoding in float32 from now on", run.loaded.entry.name,
                        run.vae.dtype)  # fmt: skip
            run.vae.to(torch.float32)
            pixels = decode(run.vae, latents)
        return pixels

    def _decode(self, run: _Run, latents: torch.Tensor) -> list[Any]:
        if run.is_cancelled is not None and run.is_cancelled():
            raise Cancelled("The job was cancelled.")
        pipe = run.loaded.pipe
        pixels = self._decode_pixels(run, latents)
        if torch.isnan(pixels).any():
            raise GenerationFailedError(
                f"Sampler {run.plan.sampler.name!r} diverged (NaN) on this model; try another sampler or more steps."
            )
        images: list[Any] = pipe.numpy_to_pil(pixels.numpy())
        return images

    def _results(self, run: _Run, images: list[Any]) -> list[RawImage]:
        params, loaded = run.plan.params, run.loaded
        extra = dict(run.plan.infotext_fields)
        if run.vae_file is not None:
            extra["VAE hash"] = self.vaes.short_hash(run.vae_file)
        if run.loras:
            hashes = [(lora.alias or lora.name, self.loras.short_hash(lora)) for lora, _ in run.loras]
            extra["Lora hashes"] = infotext_hashes(list(dict.fromkeys(hashes)))
        extra["TI hashes"] = ti_hashes(loaded.family.take_used_embeddings())
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
