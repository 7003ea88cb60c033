"""The diffusers adapter: load pipelines (cached), run one job, report progress and honour cancellation.

Runs only on the executor's worker thread, which owns torch. A call reads as numbered steps, as in diffusers.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.errors import (
    Cancelled,
    EaselError,
    GenerationFailedError,
    InvalidParamsError,
    ModelUnavailableError,
)
from engine.infotext import create_infotext
from engine.models import builtin
from engine.models.configs import sd15_config_folder
from engine.models.registry import BUILTIN_TINY, ModelEntry, ModelRegistry
from engine.models.single_file import easel_config_of, load_single_file
from engine.params import GenerationParams
from engine.samplers import make_scheduler
from engine.seeds import initial_noise

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
class LoadedModel:
    entry: ModelEntry
    pipe: Any
    scheduler_config: dict[str, Any]
    model_hash: str | None
    load_seconds: float


def resolve_device(device: str) -> str:
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelUnavailableError(f"Device {device!r} was asked for, but CUDA is not available to torch.")
    return device


class DiffusersEngine:
    """Loads and caches pipelines; `generate` runs one job. Not thread-safe: one worker thread owns it."""

    def __init__(self, registry: ModelRegistry, device: str = "auto", *, max_loaded: int = 2) -> None:
        self.registry = registry
        self.device = resolve_device(device)
        self.dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        self.max_loaded = max_loaded
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    # -- models -----------------------------------------------------------------------------------------------

    def loaded_names(self) -> list[str]:
        return list(self._loaded)

    def load(self, name: str) -> LoadedModel:
        """The pipeline for a model name, from the cache when loaded before (no reload on switching back)."""
        with self._lock:
            if name in self._loaded:
                self._loaded.move_to_end(name)
                return self._loaded[name]
        entry = self.registry.resolve(name)
        started = time.perf_counter()
        try:
            pipe = self._load_pipe(entry)
        except EaselError:
            raise
        except Exception as err:  # diffusers raises many types for broken or missing files
            log.warning("loading model %s failed: %s", entry.name, err)
            raise ModelUnavailableError(f"Model {entry.name!r} could not be loaded: {_short(err)}") from err
        pipe.set_progress_bar_config(disable=True)
        loaded = LoadedModel(
            entry=entry,
            pipe=pipe,
            scheduler_config=dict(pipe.scheduler.config),
            model_hash=self.registry.model_hash(entry),
            load_seconds=time.perf_counter() - started,
        )
        log.info("loaded model %s in %.2f s on %s", entry.name, loaded.load_seconds, self.device)
        with self._lock:
            self._loaded[name] = loaded
            while len(self._loaded) > self.max_loaded:
                evicted, _ = self._loaded.popitem(last=False)
                log.info("evicted model %s from memory", evicted)
            gc.collect()
        return loaded

    def _load_pipe(self, entry: ModelEntry) -> Any:
        from diffusers import DiffusionPipeline

        if entry.name == BUILTIN_TINY:
            folder: Path | str = builtin.build_tiny(self.registry.cache_dir)
        elif entry.kind in ("builtin", "diffusers"):
            assert entry.path is not None
            folder = entry.path
        elif entry.kind == "single-file":
            assert entry.path is not None
            config = self._config_folder_for(entry)
            return load_single_file(entry.path, config, dtype=self.dtype).to(self.device)
        else:  # a Hugging Face repo id
            folder = entry.name
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        if isinstance(folder, Path):
            kwargs["local_files_only"] = True
        kwargs.update(safety_checker=None, requires_safety_checker=False)
        try:
            pipe = DiffusionPipeline.from_pretrained(folder, **kwargs)
        except OSError as err:
            if entry.kind == "hub":
                raise ModelUnavailableError(
                    f"Model {entry.name!r} is not in the models folder and could not be fetched from the "
                    "Hugging Face hub (is this machine offline?)."
                ) from err
            raise
        return pipe.to(self.device)

    def _config_folder_for(self, entry: ModelEntry) -> Path:
        assert entry.path is not None
        if entry.architecture == "easel":
            base = easel_config_of(entry.path)
            if base == BUILTIN_TINY:
                return builtin.tiny_config_folder(self.registry.cache_dir)
            if base == "builtin:shapes":
                return builtin.SHAPES_DIR
            raise ModelUnavailableError(f"Model {entry.name!r} names an unknown built-in config {base!r}.")
        return sd15_config_folder(self.registry.cache_dir)

    # -- generation -------------------------------------------------------------------------------------------

    def generate(
        self,
        params: GenerationParams,
        *,
        on_step: ProgressFn | None = None,
        is_cancelled: CancelledFn | None = None,
    ) -> list[RawImage]:
        """Run one job: returns one decoded image per batch item, each with its seed and parameter text."""
        # 1. Model and scheduler for this job (the cached pipeline is shared; its scheduler is swapped per job).
        loaded = self.load(params.model)
        pipe = loaded.pipe
        seeds = params.image_seeds()
        pipe.scheduler = make_scheduler(loaded.scheduler_config, params.sampler, params.schedule, seed=seeds[0])

        # 2. Initial noise the A1111 way: one generator per image, variation seeds slerped in.
        scale = int(getattr(pipe, "vae_scale_factor", 8))
        if params.width % scale or params.height % scale:
            raise InvalidParamsError(f"Width and height must be multiples of {scale} for this model.")
        shape = (int(pipe.unet.config.in_channels), params.height // scale, params.width // scale)
        rng_device = self.device if self.device.startswith("cuda") else "cpu"
        noise, generators = initial_noise(
            shape,
            seeds,
            subseeds=params.image_subseeds(),
            subseed_strength=params.subseed_strength,
            rng_device=rng_device,
        )

        # 3. Progress and cancellation: raising from the step callback stops cleanly, before the VAE decode.
        def on_step_end(pipeline: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            if is_cancelled is not None and is_cancelled():
                raise Cancelled("The job was cancelled.")
            if on_step is not None:
                on_step(step + 1, int(getattr(pipeline, "_num_timesteps", 0) or params.steps))
            return kwargs

        # 4. Denoise and decode.
        try:
            with torch.inference_mode():
                output = pipe(
                    prompt=[params.prompt] * params.batch_size,
                    negative_prompt=[params.negative_prompt] * params.batch_size,
                    num_inference_steps=params.steps,
                    guidance_scale=params.cfg_scale,
                    width=params.width,
                    height=params.height,
                    latents=noise.to(self.device, self.dtype),
                    generator=generators,
                    clip_skip=params.clip_skip - 1 or None,
                    callback_on_step_end=on_step_end,
                    output_type="np",
                )
        except EaselError:
            raise
        except torch.cuda.OutOfMemoryError as err:
            raise GenerationFailedError(
                f"The GPU ran out of memory at {params.width}x{params.height} with batch {params.batch_size}; "
                "try a smaller size or batch."
            ) from err
        except Exception as err:
            log.exception("generation failed")
            raise GenerationFailedError(f"Generation failed: {_short(err)}") from err

        # 5. A diverged sampler gives NaN: say so instead of returning a black image.
        if np.isnan(output.images).any():
            raise GenerationFailedError(
                f"Sampler {params.sampler!r} diverged (NaN) on this model; try another sampler or more steps."
            )
        images = pipe.numpy_to_pil(output.images)

        # 6. Parameter text per image (each image carries its own seed).
        return [
            RawImage(
                image=image,
                seed=seeds[i],
                infotext=create_infotext(
                    params, model_name=loaded.entry.name, model_hash=loaded.model_hash, image_index=i
                ),
            )
            for i, image in enumerate(images)
        ]


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:300]
