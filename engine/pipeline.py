"""The diffusers adapter: load pipelines (cached), run one job, report progress and honour cancellation.

Runs only on the executor's worker thread, which owns torch. A call reads as numbered steps, as in diffusers.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine.blobs import BlobStore
from engine.denoise import (
    A1111_TIMESTEP_SAMPLERS,
    Denoised,
    Guidance,
    Schedule,
    crop_latents,
    decode,
    encode,
    img2img_steps,
    run_a1111_timesteps,
    run_ksampler,
    run_scheduler,
    upscale_latents,
)
from engine.embeddings import EmbeddingDB, ti_hashes
from engine.errors import Cancelled, EaselError, GenerationFailedError, InvalidParamsError, short_reason
from engine.infotext import create_infotext
from engine.loras import LoraFile, LoraLibrary, apply_loras, infotext_hashes
from engine.models import builtin
from engine.models.loader import LoadedModel, ModelLoader
from engine.models.registry import ModelRegistry
from engine.params import GenerationParams, hires_size
from engine.previews import LatentPreview, PreviewFn
from engine.prompts.and_split import split_and
from engine.prompts.extra_networks import ExtraNetworkCall, LoraCall, lora_call, parse_extra_networks
from engine.prompts.schedules import get_learned_conditioning_prompt_schedules
from engine.samplers import make_scheduler, sampler_info
from engine.seeds import ImageRNG

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
# Samplers that write ENSD to the infotext (A1111's `uses_ensd`: their per-step noise depends on it).
ENSD_SAMPLERS = frozenset({"Euler a", "DPM2 a", "DPM++ 2S a", "DPM fast", "DPM adaptive"})
CancelledFn = Callable[[], bool]


@dataclass(frozen=True)
class RawImage:
    """A decoded image before encoding (encoding happens off the worker thread)."""

    image: Any  # PIL.Image.Image
    seed: int
    infotext: str


class DiffusersEngine:
    """Runs jobs on the pipelines its `ModelLoader` keeps. Not thread-safe: one worker thread owns it."""

    def __init__(
        self,
        registry: ModelRegistry,
        device: str = "auto",
        *,
        max_loaded: int = 2,
        lora_dirs: list[Path] | None = None,
        blobs: BlobStore | None = None,
        embedding_dirs: list[Path] | None = None,
    ) -> None:
        self.registry = registry
        self.loras = LoraLibrary([*(lora_dirs or []), builtin.SHAPES_LORAS_DIR], registry.hashes)
        self.blobs = blobs or BlobStore(registry.cache_dir / "blobs")
        self.loader = ModelLoader(registry, device, max_loaded=max_loaded, embeddings=EmbeddingDB(embedding_dirs or []))
        self.device = self.loader.device

    def load(self, name: str) -> LoadedModel:
        """The pipeline for a model name, from the cache when loaded before (no reload on switching back)."""
        return self.loader.load(name)

    # -- generation -------------------------------------------------------------------------------------------

    def generate(
        self,
        params: GenerationParams,
        *,
        on_step: ProgressFn | None = None,
        is_cancelled: CancelledFn | None = None,
        on_preview: PreviewFn | None = None,
    ) -> list[RawImage]:
        """Run one job: returns one decoded image per batch item, each with its seed and parameter text.

        `on_preview(step, total, source)` follows each `on_step`; `source.render()` (on this thread) makes a small
        image of the current denoised estimate. Without `on_preview` nothing is recorded for previews at all.
        """
        try:
            with torch.inference_mode():
                return self._generate(params, on_step, is_cancelled, on_preview)
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
        params: GenerationParams,
        on_step: ProgressFn | None,
        is_cancelled: CancelledFn | None,
        on_preview: PreviewFn | None,
    ) -> list[RawImage]:
        # 1. Model, and the LoRAs named in the prompt (tags removed from the text, kept in the infotext).
        loaded = self.load(params.model)
        pipe = loaded.pipe
        prompt, calls = parse_extra_networks(params.prompt)
        negative, negative_calls = parse_extra_networks(params.negative_prompt)
        loras = self._resolve_loras(calls + negative_calls)
        apply_loras(pipe, loaded.adapters, loras)
        lora_state = ";".join(f"{lora.name}:{c.te_multiplier}" for lora, c in loras)

        # 2. Conditioning schedules (prompt editing counts steps the A1111 way; AND parts are weighted).
        loaded.conditioner.take_used()  # forget what an earlier (perhaps failed) job encoded
        info = sampler_info(params.sampler)
        total_steps = params.steps * 2 if info.second_order else params.steps
        guidance = self._guidance(loaded, prompt, negative, params, total_steps, None, lora_state)

        # 3. Noise: one generator per image, variation seeds slerped in, A1111's RNG source.
        scale = int(pipe.vae_scale_factor)
        if params.width % scale or params.height % scale:
            raise InvalidParamsError(f"Width and height must be multiples of {scale} for this model.")
        channels = int(pipe.unet.config.in_channels)
        seeds = params.image_seeds()

        def image_rng(width: int, height: int) -> ImageRNG:
            resize = None
            if params.seed_resize_from_w > 0 and params.seed_resize_from_h > 0:
                resize = (params.seed_resize_from_h // scale, params.seed_resize_from_w // scale)
            return ImageRNG(
                (channels, height // scale, width // scale),
                seeds,
                subseeds=params.image_subseeds(),
                subseed_strength=params.subseed_strength,
                seed_resize_from=resize,
                source=params.rng,
                device=self.device,
                ensd=params.ensd,
            )

        # 4. First pass: txt2img from noise, or img2img from the init image.
        passes = 2 if params.enable_hr else 1
        denoised = Denoised() if on_preview is not None else None
        preview = LatentPreview(denoised.get, pipe.vae, scale) if denoised is not None else None
        progress = _PassProgress(on_step, passes, on_preview, preview)
        rng = image_rng(params.width, params.height)
        noise = rng.first().to(self.device)
        init_latents = None
        if params.init_image is not None:
            init_latents = self._init_latents(pipe, params).repeat(params.batch_size, 1, 1, 1)
        latents = self._sample(
            loaded, params, guidance, rng, noise, init_latents, params.denoising_strength, params.steps,
            progress.for_pass(0), is_cancelled, denoised,
        )  # fmt: skip
        extra: dict[str, str | None] = {}
        if params.init_image is not None:
            extra["Denoising strength"] = _num(params.denoising_strength)

        # 5. Hires fix: upscale (in latent space, or decode-resize-encode), then img2img at the new size.
        width, height = params.width, params.height
        if params.enable_hr:
            width, height = hires_size(params.width, params.height, params.hr_scale, params.hr_resize_x,
                                       params.hr_resize_y)  # fmt: skip
            width, height = width // scale * scale, height // scale * scale
            if params.hr_upscaler.startswith("Latent"):
                latents = upscale_latents(latents, (height // scale, width // scale), params.hr_upscaler)
            else:
                images = decode(pipe.vae, latents).permute(0, 3, 1, 2)
                resample = "nearest" if params.hr_upscaler == "Nearest" else "bicubic"
                images = F.interpolate(images, size=(height, width), mode=resample, antialias=resample != "nearest")
                latents = encode(pipe.vae, images.clamp(0, 1).to(self.device))
            if params.hr_resize_x and params.hr_resize_y:
                # Both sides given: the upscale covered the target; crop the overhang as A1111's truncate_x/y do.
                latents = crop_latents(latents, params.hr_resize_y // scale, params.hr_resize_x // scale)
                height, width = latents.shape[2] * scale, latents.shape[3] * scale
            hr_steps = params.hr_steps or params.steps
            hr_total = hr_steps * 2 if info.second_order else hr_steps
            hr_guidance = self._guidance(loaded, prompt, negative, params, total_steps, hr_total, lora_state)
            hr_rng = image_rng(width, height)
            latents = self._sample(
                loaded, params, hr_guidance, hr_rng, hr_rng.first().to(self.device), latents,
                params.denoising_strength, hr_steps, progress.for_pass(1), is_cancelled, denoised, hires=True,
            )  # fmt: skip
            extra["Denoising strength"] = _num(params.denoising_strength)
            if params.hr_resize_x or params.hr_resize_y:
                extra["Hires resize"] = f"{params.hr_resize_x}x{params.hr_resize_y}"
            else:
                extra["Hires upscale"] = _num(params.hr_scale)
            extra["Hires steps"] = str(params.hr_steps) if params.hr_steps else None
            extra["Hires upscaler"] = params.hr_upscaler

        # 6. Decode; a diverged sampler gives NaN: say so instead of returning a black image.
        if is_cancelled is not None and is_cancelled():
            raise Cancelled("The job was cancelled.")
        pixels = decode(pipe.vae, latents)
        if torch.isnan(pixels).any():
            raise GenerationFailedError(
                f"Sampler {params.sampler!r} diverged (NaN) on this model; try another sampler or more steps."
            )
        images = pipe.numpy_to_pil(pixels.numpy())

        # 7. Parameter text per image (each image carries its own seed).
        if params.seed_resize_from_w > 0 and params.seed_resize_from_h > 0:
            extra["Seed resize from"] = f"{params.seed_resize_from_w}x{params.seed_resize_from_h}"
        if params.ensd and params.sampler in ENSD_SAMPLERS:
            extra["ENSD"] = str(params.ensd)
        if params.rng != "GPU":
            extra["RNG"] = params.rng
        if loras:
            hashes = [(lora.alias or lora.name, self.loras.short_hash(lora)) for lora, _ in loras]
            extra["Lora hashes"] = infotext_hashes(list(dict.fromkeys(hashes)))
        extra["TI hashes"] = ti_hashes(loaded.conditioner.take_used())
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

    def _resolve_loras(self, calls: list[ExtraNetworkCall]) -> list[tuple[LoraFile, LoraCall]]:
        loras = []
        for call in calls:
            if call.kind != "lora":
                raise InvalidParamsError(f"<{call.kind}:...> is not supported; only <lora:name:weight> tags are.")
            lora = lora_call(call)
            loras.append((self.loras.resolve(lora.name), lora))
        return loras

    def _guidance(
        self,
        loaded: LoadedModel,
        prompt: str,
        negative: str,
        params: GenerationParams,
        total_steps: int,
        hires_steps: int | None,
        state: str,
    ) -> Guidance:
        def schedule(text: str) -> Schedule:
            [entries] = get_learned_conditioning_prompt_schedules([text], total_steps, hires_steps)
            return [(int(end), loaded.conditioner.encode(str(t), params.clip_skip, state)) for end, t in entries]

        parts = split_and(prompt)
        return Guidance(
            unet=loaded.pipe.unet,
            conds=[(schedule(text), weight) for text, weight in parts],
            uncond=schedule(negative),
            cfg_scale=params.cfg_scale,
        )

    def _init_latents(self, pipe: Any, params: GenerationParams) -> torch.Tensor:
        from PIL import Image

        assert params.init_image is not None
        data = self.blobs.get(params.init_image)
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("RGB").resize((params.width, params.height), Image.Resampling.LANCZOS)
        tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
        return encode(pipe.vae, tensor.to(self.device))

    def _sample(
        self,
        loaded: LoadedModel,
        params: GenerationParams,
        guidance: Guidance,
        rng: ImageRNG,
        noise: torch.Tensor,
        init_latents: torch.Tensor | None,
        denoise: float | None,
        steps: int,
        on_step: ProgressFn | None,
        is_cancelled: CancelledFn | None,
        denoised: Denoised | None = None,
        *,
        hires: bool = False,
    ) -> torch.Tensor:
        """One sampling pass with A1111's img2img step arithmetic."""
        if init_latents is None:
            schedule_steps, run_steps = steps, steps
        elif not denoise:
            return init_latents  # strength 0 changes nothing, as in A1111
        else:
            schedule_steps, run_steps = img2img_steps(steps, denoise, hires=hires)
        if not sampler_info(params.sampler).timesteps:
            return run_ksampler(
                params.sampler,
                params.schedule,
                loaded.scheduler_config,
                guidance,
                noise,
                schedule_steps=schedule_steps,
                run_steps=run_steps,
                init_latents=init_latents,
                randn_like=rng.randn_like,
                seeds=rng.seeds,
                on_step=on_step,
                is_cancelled=is_cancelled,
                denoised=denoised,
            )
        if params.sampler in A1111_TIMESTEP_SAMPLERS:
            return run_a1111_timesteps(
                params.sampler,
                loaded.scheduler_config,
                guidance,
                noise,
                schedule_steps=schedule_steps,
                run_steps=run_steps,
                init_latents=init_latents,
                randn_like=rng.randn_like,
                on_step=on_step,
                is_cancelled=is_cancelled,
                denoised=denoised,
            )
        scheduler = make_scheduler(loaded.scheduler_config, params.sampler)
        torch_generators = [g for g in rng.generators if isinstance(g, torch.Generator)]
        if len(torch_generators) != len(rng.generators):
            # diffusers' schedulers draw only from torch generators: seed CPU ones so LCM stays deterministic.
            torch_generators = [torch.Generator("cpu").manual_seed(s + params.ensd) for s in rng.seeds]
        return run_scheduler(
            scheduler,
            guidance,
            noise,
            schedule_steps=schedule_steps,
            run_steps=run_steps,
            init_latents=init_latents,
            generator=torch_generators,
            on_step=on_step,
            is_cancelled=is_cancelled,
            denoised=denoised,
        )


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


def _num(value: float | None) -> str | None:
    if value is None:
        return None
    return str(int(value)) if float(value).is_integer() else str(value)
