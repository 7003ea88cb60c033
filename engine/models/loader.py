"""Loading pipelines (diffusers folders, single files offline, hub ids, built-ins), keeping the hot ones within a
count and a memory budget, and the VAEs of the VAE folder for each loaded model."""

from __future__ import annotations

import contextlib
import gc
import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.conditioning import FLUX_CLIP_L, SDXL_CLIP_G, SDXL_CLIP_L, Conditioner
from engine.embeddings import EmbeddingDB
from engine.errors import EaselError, InvalidParamsError, ModelUnavailableError, short_reason
from engine.families import ModelFamily, SD1Family, SDXLFamily
from engine.families.flux import FluxFamily, T5Conditioner
from engine.flux.gguf_files import read_gguf_header
from engine.flux.modules import FluxModules
from engine.ksampling.denoiser import flux_mu
from engine.loras import PatchedLoras
from engine.models import builtin
from engine.models.detect import FAMILY_NAMES
from engine.models.entries import ModelEntry
from engine.models.registry import BUILTIN_TINY, BUILTIN_TINY_FLUX, BUILTIN_TINY_XL, ModelRegistry
from engine.models.single_file import load_single_file, read_header
from engine.speed import SpeedOptions, apply_speed
from engine.vaes import VaeFile

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    entry: ModelEntry
    pipe: Any
    scheduler_config: dict[str, Any]
    model_hash: str | None
    load_seconds: float
    conditioner: Conditioner  # the (first) text encoder's
    family: ModelFamily
    adapters: set[str] = field(default_factory=set)
    vaes: dict[str, Any] = field(default_factory=dict)  # VAE-folder VAEs loaded for this model, by file name
    patched: PatchedLoras | None = None  # with a compiled UNet, LoRAs are merged in place instead of adapters
    modules: tuple[str, ...] = ()  # Flux: the separately installed files it runs with (ae, clip_l, t5xxl), by stem

    @property
    def sdxl(self) -> bool:
        return self.entry.family == "sdxl"


def resolve_device(device: str) -> str:
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelUnavailableError(f"Device {device!r} was asked for, but CUDA is not available to torch.")
    return device


def pipe_bytes(pipe: Any) -> int:
    """The memory a pipeline's weights take."""
    total = 0
    for name in ("unet", "transformer", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, name, None)
        if module is not None:
            total += sum(p.numel() * p.element_size() for p in module.parameters())
    return total


# What diffusers/transformers and torch say when a checkpoint's tensor has another shape than the architecture's.
_SHAPE_MISMATCHES = (
    re.compile(r"(?P<key>[\w.]+) expected shape (?:torch\.Size\()?(?P<want>\[[\d, ]*\])\)?, but got "
               r"(?:torch\.Size\()?(?P<got>\[[\d, ]*\])"),
    re.compile(r"size mismatch for (?P<key>[\w.]+): copying a param with shape (?:torch\.Size\()?(?P<got>\[[\d, ]*\])"
               r"\)? from checkpoint, the shape in current model is (?:torch\.Size\()?(?P<want>\[[\d, ]*\])"),
)  # fmt: skip


def load_failure(name: str, family: str, err: BaseException) -> str:
    """The user's reason a model did not load: for a tensor that does not fit the architecture the file was
    detected as, which tensor and both shapes; else the library's first line."""
    text = str(err)
    for pattern in _SHAPE_MISMATCHES:
        found = pattern.search(text)
        if found is not None:
            return (
                f"Model {name!r} does not fit the {FAMILY_NAMES.get(family, family)} architecture it was detected as: "
                f"its tensor {found['key']} is {found['got']}, the architecture's is {found['want']}. It is another "
                "kind of model, or damaged."
            )
    return f"Model {name!r} could not be loaded: {short_reason(err)}"


class ModelLoader:
    """Loads pipelines by name and keeps the most recently used resident: at most `max_loaded`, and, with a
    `memory_budget` (bytes), no more than fit in it. Before a new model loads, the least recently used are freed
    until it fits, so two large models are never in memory at once when only one fits."""

    def __init__(
        self,
        registry: ModelRegistry,
        device: str,
        *,
        max_loaded: int = 2,
        memory_budget: int | None = None,
        embeddings: EmbeddingDB | None = None,
        speed: SpeedOptions | None = None,
        flux_modules: FluxModules | None = None,
    ) -> None:
        self.registry = registry
        self.device = resolve_device(device)
        self.speed = speed or SpeedOptions()
        self.dtype = self.speed.torch_dtype(self.device)
        self.max_loaded = max(1, max_loaded)
        self.memory_budget = memory_budget
        self.embeddings = embeddings
        self.flux_modules = flux_modules or FluxModules([])
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def loaded_names(self) -> list[str]:
        return list(self._loaded)

    def load(self, name: str) -> LoadedModel:
        """The pipeline for a model name, from the cache when loaded before (no reload on switching back)."""
        with self._lock:
            if name in self._loaded:
                self._loaded.move_to_end(name)
                return self._loaded[name]
        entry = self.registry.resolve(name)
        self._make_room(self.estimate_bytes(entry))
        started = time.perf_counter()
        modules: tuple[str, ...] = ()
        try:
            if entry.family == "flux":
                pipe, modules = self._load_flux(entry)
            else:
                pipe = self._load_pipe(entry)
        except EaselError:
            raise
        except Exception as err:  # diffusers raises many types for broken or missing files
            log.warning("loading model %s failed: %s", entry.name, err)
            raise ModelUnavailableError(load_failure(entry.name, entry.family, err)) from err
        pipe.set_progress_bar_config(disable=True)
        unet = pipe.transformer if entry.family == "flux" else apply_speed(pipe, self.speed, entry.latent_scale)
        conditioner, family = self._family(entry, pipe, unet)
        loaded = LoadedModel(
            entry=entry,
            pipe=pipe,
            scheduler_config=self._scheduler_config(entry, pipe),
            model_hash=self.registry.model_hash(entry),
            load_seconds=time.perf_counter() - started,
            conditioner=conditioner,
            family=family,
            patched=PatchedLoras() if self.speed.compile != "off" and entry.family != "flux" else None,
            modules=modules,
        )
        log.info("loaded model %s in %.2f s on %s", entry.name, loaded.load_seconds, self.device)
        with self._lock:
            self._loaded[name] = loaded
        return loaded

    def estimate_bytes(self, entry: ModelEntry) -> int:
        """What a model will take once loaded: its file's weights at the inference dtype (0 where unknown)."""
        if entry.family == "flux" and entry.path is not None and entry.path.is_file():
            return self._flux_bytes(entry.path)
        if entry.kind != "single-file" or entry.path is None or not entry.path.exists():
            return 0
        try:
            header = read_header(entry.path)
        except (OSError, ValueError):
            return 0
        count = 0
        for key, value in header.items():
            if key != "__metadata__" and isinstance(value, dict) and not key.startswith("model_ema."):
                numel = 1
                for dim in value.get("shape", []):
                    numel *= int(dim)
                count += numel
        return count * torch.finfo(self.dtype).bits // 8

    def _flux_bytes(self, path: Path) -> int:
        """A Flux model's weights as stored (fp8 and GGUF stay so; Easel keeps bf16 files bf16 on a GPU): its
        file, plus the module files it will load apart."""
        from engine.flux.modules import KINDS

        total = path.stat().st_size
        keys = set(read_gguf_header(path) if path.suffix.lower() == ".gguf" else read_header(path))
        if any(k.startswith(("vae.", "first_stage_model.", "text_encoders.")) for k in keys):
            return total  # a full checkpoint: its modules are in the file
        for kind in KINDS:
            with contextlib.suppress(EaselError, OSError):  # a missing module is refused when the model loads
                total += self.flux_modules.pick(kind).path.stat().st_size
        return total

    def _make_room(self, needed: int) -> None:
        """Free the least recently used models until one more fits the count and the budget."""
        with self._lock:
            evicted = []
            while self._loaded and (
                len(self._loaded) >= self.max_loaded
                or (
                    self.memory_budget is not None
                    and sum(pipe_bytes(m.pipe) for m in self._loaded.values()) + needed > self.memory_budget
                )
            ):
                name, _ = self._loaded.popitem(last=False)
                evicted.append(name)
        for name in evicted:
            log.info("freed model %s to make room", name)
        if evicted:
            gc.collect()
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()

    def _family(self, entry: ModelEntry, pipe: Any, unet: Any) -> tuple[Conditioner, ModelFamily]:
        if entry.family == "flux":
            clip = Conditioner(pipe.tokenizer, pipe.text_encoder, self.device, style=FLUX_CLIP_L)
            t5_device = "cpu" if self.speed.flux_t5_cpu else self.device
            return clip, FluxFamily(unet, clip, T5Conditioner(pipe.tokenizer_2, pipe.text_encoder_2, t5_device))
        if entry.family == "sdxl":
            width = int(pipe.text_encoder.get_input_embeddings().embedding_dim) + int(
                pipe.text_encoder_2.get_input_embeddings().embedding_dim
            )
            first = Conditioner(
                pipe.tokenizer, pipe.text_encoder, self.device, self.embeddings, style=SDXL_CLIP_L,
                embedding_width=width,
            )  # fmt: skip
            second = Conditioner(
                pipe.tokenizer_2, pipe.text_encoder_2, self.device, self.embeddings, style=SDXL_CLIP_G,
                embedding_width=width,
            )  # fmt: skip
            return first, SDXLFamily(unet, first, second)
        conditioner = Conditioner(pipe.tokenizer, pipe.text_encoder, self.device, embeddings=self.embeddings)
        return conditioner, SD1Family(unet, conditioner)

    @staticmethod
    def _scheduler_config(entry: ModelEntry, pipe: Any) -> dict[str, Any]:
        """The model's noise schedule, with the prediction type and zero-terminal-SNR flag the file (or its owner)
        says: a single file loads with a skeleton config that cannot know them."""
        if entry.family == "flux":  # Forge's fixed shift: dev's mu 1.15, schnell's 1.0
            return {"prediction_type": "flux", "flux_mu": flux_mu(schnell=not pipe.transformer.config.guidance_embeds)}
        config = dict(pipe.scheduler.config)
        if entry.kind != "hub":
            config["prediction_type"] = entry.prediction
            config["rescale_betas_zero_snr"] = entry.ztsnr
        return config

    def _load_pipe(self, entry: ModelEntry) -> Any:
        from diffusers import DiffusionPipeline

        cache = self.registry.cache_dir
        if entry.name == BUILTIN_TINY_XL:
            folder = builtin.build_tiny_xl(cache)
            pipe = load_single_file(
                folder / builtin.TINY_XL_FILE, builtin.tiny_xl_config_folder(cache), sdxl=True, dtype=self.dtype
            )
            return pipe.to(self.device)
        if entry.name == BUILTIN_TINY:
            source: Path | str = builtin.build_tiny(cache)
        elif entry.kind in ("builtin", "diffusers"):
            assert entry.path is not None
            source = entry.path
        elif entry.kind == "single-file":
            assert entry.path is not None
            config = self._config_folder_for(entry)
            pipe = load_single_file(entry.path, config, sdxl=entry.family == "sdxl", dtype=self.dtype)
            return pipe.to(self.device)
        else:  # a Hugging Face repo id
            source = entry.name
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        if isinstance(source, Path):
            kwargs["local_files_only"] = True
        kwargs.update(safety_checker=None, requires_safety_checker=False)
        try:
            pipe = DiffusionPipeline.from_pretrained(source, **kwargs)
        except OSError as err:
            if entry.kind == "hub":
                raise ModelUnavailableError(
                    f"Model {entry.name!r} is not in the models folder and could not be fetched from the "
                    "Hugging Face hub (is this machine offline?)."
                ) from err
            raise
        return pipe.to(self.device)

    def _load_flux(self, entry: ModelEntry) -> tuple[Any, tuple[str, ...]]:
        """A Flux.1 transformer file with its modules: those in the file itself (a full checkpoint), else the
        installed ones (builtin:tiny-flux: its own)."""
        from engine.flux.load import flux_parts, flux_pipeline
        from engine.flux.modules import KINDS, Module, module_prefix
        from engine.flux.tiny import build_tiny_flux

        assert entry.path is not None
        if entry.kind == "diffusers":  # a diffusers folder (FluxPipeline.save_pretrained): its parts as they are
            return self._load_flux_folder(entry.path), ()
        path, library = entry.path, self.flux_modules
        if entry.name == BUILTIN_TINY_FLUX:
            folder = build_tiny_flux(self.registry.cache_dir)
            path, library = folder / path.name, FluxModules([folder])
        keys = list(read_gguf_header(path) if path.suffix.lower() == ".gguf" else read_header(path))
        chosen: dict[str, Module] = {}
        separate = []
        for kind in KINDS:
            prefix = module_prefix(kind, keys)
            if prefix:
                chosen[kind] = Module(kind, path, prefix)
            else:
                chosen[kind] = library.pick(kind)
                separate.append(chosen[kind].name)
        offload = self.speed.flux_offload and self.device.startswith("cuda")
        parts = flux_parts(
            path, chosen, dtype=self.speed.flux_dtype(self.device), device="cpu" if offload else self.device,
            cache_dir=self.registry.cache_dir, t5_device="cpu" if self.speed.flux_t5_cpu else None,
        )  # fmt: skip
        pipe = flux_pipeline(parts)
        if offload:  # each part is moved to the GPU by a hook when it runs, the one before it back to the CPU
            t5 = pipe.text_encoder_2
            if self.speed.flux_t5_cpu:
                pipe.text_encoder_2 = None
            pipe.enable_model_cpu_offload(device=self.device)
            pipe.text_encoder_2 = t5
        return pipe, tuple(separate)

    def _load_flux_folder(self, folder: Path) -> Any:
        from diffusers import DiffusionPipeline

        dtype = self.speed.flux_dtype(self.device)
        pipe = DiffusionPipeline.from_pretrained(folder, dtype=dtype, local_files_only=True)
        pipe.transformer.easel_compute = dtype
        pipe.transformer.easel_storage = dtype
        return pipe.to(self.device)

    def _config_folder_for(self, entry: ModelEntry) -> Path:
        return self.registry.single_file_configs(entry)

    def vae(self, loaded: LoadedModel, vae: VaeFile) -> Any:
        """A VAE-folder VAE for a loaded model: the model's VAE architecture and scaling with the file's weights,
        loaded once per model. A file whose tensors do not fit is refused with the reason."""
        cached = loaded.vaes.get(vae.name)
        if cached is not None:
            return cached
        from diffusers import AutoencoderKL
        from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
        from safetensors.torch import load_file

        state = load_file(str(vae.path))
        if not any("down_blocks" in key for key in state):  # A1111 layout (`encoder.down.0...`): convert
            state = convert_ldm_vae_checkpoint(state, dict(loaded.pipe.vae.config))
        model = AutoencoderKL.from_config(loaded.pipe.vae.config)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise InvalidParamsError(
                f"VAE {vae.name!r} does not fit model {loaded.entry.name!r}: {short_reason(err)}"
            ) from err
        model = model.to(self.device, loaded.pipe.vae.dtype).eval()
        loaded.vaes[vae.name] = model
        log.info("loaded VAE %s for model %s", vae.name, loaded.entry.name)
        return model
