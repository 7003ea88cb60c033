"""Loading pipelines (diffusers folders, single files offline, hub ids, built-ins) and keeping the hot ones."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.conditioning import Conditioner
from engine.embeddings import EmbeddingDB
from engine.errors import EaselError, ModelUnavailableError, short_reason
from engine.families import ModelFamily, SD1Family
from engine.models import builtin
from engine.models.configs import sd15_config_folder
from engine.models.registry import BUILTIN_SHAPES, BUILTIN_TINY, ModelEntry, ModelRegistry
from engine.models.single_file import easel_config_of, load_single_file

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    entry: ModelEntry
    pipe: Any
    scheduler_config: dict[str, Any]
    model_hash: str | None
    load_seconds: float
    conditioner: Conditioner
    family: ModelFamily
    adapters: set[str] = field(default_factory=set)


def resolve_device(device: str) -> str:
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelUnavailableError(f"Device {device!r} was asked for, but CUDA is not available to torch.")
    return device


class ModelLoader:
    """Loads pipelines by name and keeps the last `max_loaded` resident (switching back does not reload)."""

    def __init__(
        self, registry: ModelRegistry, device: str, *, max_loaded: int = 2, embeddings: EmbeddingDB | None = None
    ) -> None:
        self.registry = registry
        self.device = resolve_device(device)
        self.dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        self.max_loaded = max_loaded
        self.embeddings = embeddings
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
        started = time.perf_counter()
        try:
            pipe = self._load_pipe(entry)
        except EaselError:
            raise
        except Exception as err:  # diffusers raises many types for broken or missing files
            log.warning("loading model %s failed: %s", entry.name, err)
            raise ModelUnavailableError(f"Model {entry.name!r} could not be loaded: {short_reason(err)}") from err
        pipe.set_progress_bar_config(disable=True)
        conditioner = Conditioner(pipe.tokenizer, pipe.text_encoder, self.device, embeddings=self.embeddings)
        loaded = LoadedModel(
            entry=entry,
            pipe=pipe,
            scheduler_config=dict(pipe.scheduler.config),
            model_hash=self.registry.model_hash(entry),
            load_seconds=time.perf_counter() - started,
            conditioner=conditioner,
            family=SD1Family(pipe.unet, conditioner),
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
            if base == BUILTIN_SHAPES:
                return builtin.SHAPES_DIR
            raise ModelUnavailableError(f"Model {entry.name!r} names an unknown built-in config {base!r}.")
        return sd15_config_folder(self.registry.cache_dir)
