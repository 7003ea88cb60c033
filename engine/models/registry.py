"""The model registry: what can be loaded, under which name, and why a file is refused.

Names are what users type: a file or folder name in the models folder (without extension), `builtin:tiny`,
`builtin:shapes`, or a Hugging Face repo id (`owner/name`). Lookups never follow a path out of the models folder.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelUnavailableError
from engine.infotext import ModelHint
from engine.models import builtin
from engine.models.hashing import HashCache
from engine.params import GenerationParams, ModelDefaults
from engine.plan import GenerationPlan, ModelTraits, make_plan

log = logging.getLogger(__name__)

BUILTIN_TINY = "builtin:tiny"
BUILTIN_SHAPES = "builtin:shapes"
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
PICKLE_REFUSAL = "pickle checkpoint (.ckpt/.pt can run code when loaded); convert it to .safetensors"
SD1_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str  # "builtin", "diffusers", "single-file", "hub"
    path: Path | None
    refused: str | None = None
    architecture: str = "sd1"  # "sd1", "sd2", "sdxl", "unknown"
    latent_scale: int = 8  # image pixels per latent pixel, from the VAE config (SD's VAE: 8)

    @property
    def usable(self) -> bool:
        return self.refused is None

    @property
    def traits(self) -> ModelTraits:
        return ModelTraits(family="sdxl" if self.architecture == "sdxl" else "sd1", latent_scale=self.latent_scale)


class ModelRegistry:
    """Scans the models folder; resolves names; knows each model's defaults and hash."""

    def __init__(self, models_dir: Path, cache_dir: Path, *, allow_ckpt: bool = False) -> None:
        self.models_dir = models_dir
        self.cache_dir = cache_dir
        self.allow_ckpt = allow_ckpt
        self.hashes = HashCache(cache_dir / "hashes.json")
        self._entries: dict[str, ModelEntry] = {}
        self.refresh()

    def refresh(self) -> None:
        """Rescan the models folder (cheap: names and headers only, no weights)."""
        entries: dict[str, ModelEntry] = {}
        if builtin.SHAPES_DIR.joinpath("model_index.json").exists():
            entries[BUILTIN_SHAPES] = ModelEntry(
                BUILTIN_SHAPES, "builtin", builtin.SHAPES_DIR, latent_scale=latent_scale_of(builtin.SHAPES_DIR)
            )
        entries[BUILTIN_TINY] = ModelEntry(BUILTIN_TINY, "builtin", None)
        if self.models_dir.is_dir():
            for path in sorted(self.models_dir.iterdir(), key=lambda p: p.name.lower()):
                entry = self._scan(path)
                if entry is not None and entry.name not in entries:
                    entries[entry.name] = entry
        self._entries = entries
        log.info("model registry: %d usable, %d refused", len(self.names()), len(self.refused()))

    def _scan(self, path: Path) -> ModelEntry | None:
        if path.name.startswith("."):
            return None
        if path.is_dir():
            index = path / "model_index.json"
            if not index.is_file():
                return None  # e.g. the Lora folder
            try:
                pipeline_class = str(json.loads(index.read_text(encoding="utf-8")).get("_class_name", ""))
            except (OSError, ValueError):
                return ModelEntry(path.name, "diffusers", path, refused="model_index.json is unreadable")
            if pipeline_class not in SD1_PIPELINES:
                return ModelEntry(
                    path.name, "diffusers", path, refused=f"{pipeline_class} models are not supported yet (SD 1.x only)"
                )
            return ModelEntry(path.name, "diffusers", path, latent_scale=latent_scale_of(path))
        suffix = path.suffix.lower()
        if suffix not in CHECKPOINT_SUFFIXES:
            return None
        name = path.stem
        if suffix in PICKLE_SUFFIXES:
            refused = None if (self.allow_ckpt and suffix == ".ckpt") else PICKLE_REFUSAL
            return ModelEntry(name, "single-file", path, refused=refused)
        from engine.models.single_file import detect_architecture

        try:
            arch = detect_architecture(path)
        except ValueError as err:
            return ModelEntry(name, "single-file", path, refused=str(err))
        refused = None if arch in ("sd1", "easel") else f"{arch.upper()} single-file checkpoints are not supported yet"
        return ModelEntry(name, "single-file", path, refused=refused, architecture=arch)

    def entries(self) -> list[ModelEntry]:
        return list(self._entries.values())

    def names(self) -> list[str]:
        return [e.name for e in self._entries.values() if e.usable]

    def refused(self) -> list[ModelEntry]:
        return [e for e in self._entries.values() if not e.usable]

    def resolve(self, name: str) -> ModelEntry:
        """The entry for a user-typed name; a Hugging Face repo id when it looks like one."""
        name = name.strip()
        entry = self._entries.get(name) or next(
            (e for e in self._entries.values() if e.name.lower() == name.lower()), None
        )
        if entry is not None:
            if entry.refused:
                raise ModelUnavailableError(f"Model {entry.name!r} is refused: {entry.refused}.")
            return entry
        if _HUB_ID.match(name) and ".." not in name:
            return ModelEntry(name, "hub", None)
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.3)
        hint = f" Closest: {', '.join(close)}." if close else f" Available: {', '.join(self.names()[:10])}."
        raise ModelUnavailableError(f"Unknown model {name!r}.{hint}")

    def match(self, hint: ModelHint) -> str | None:
        """The usable local model a pasted block names: by `Model hash` where the hash is already known (as A1111
        looks the hash up first; hashing every checkpoint on a paste would take minutes), else by name. Never a hub
        id: a pasted name must not start a download."""
        if hint.hash and len(hint.hash) >= 8:
            wanted = hint.hash.lower()
            for entry in self._entries.values():
                known = self._known_hash(entry) if entry.usable else None
                if known is not None and known[: len(wanted)] == wanted:
                    return entry.name
        if hint.name:
            name = hint.name.strip().lower()
            for entry in self._entries.values():
                if entry.usable and entry.name.lower() == name:
                    return entry.name
        return None

    def _known_hash(self, entry: ModelEntry) -> str | None:
        weights = self._hashed_file(entry)
        return self.hashes.known("sha256", weights) if weights is not None else None

    def default_model(self, configured: str | None) -> str:
        """The configured default, else the first model in the folder, else a built-in one."""
        if configured:
            return self.resolve(configured).name
        for entry in self._entries.values():
            if entry.usable and entry.kind != "builtin":
                return entry.name
        return BUILTIN_SHAPES if BUILTIN_SHAPES in self._entries else BUILTIN_TINY

    def traits(self, name: str) -> ModelTraits:
        """What a job's plan needs to know of the model (a hub model not in the folder is taken to be SD-like)."""
        entry = self._entries.get(name)
        return entry.traits if entry is not None else ModelTraits()

    def plan(self, params: GenerationParams) -> GenerationPlan:
        """A job's plan, made with its model's traits."""
        return make_plan(params, self.traits(params.model))

    def defaults_for(self, name: str) -> ModelDefaults:
        if name == BUILTIN_TINY:
            return ModelDefaults(width=64, height=64, steps=8, cfg_scale=7.0, sampler="Euler")
        if name == BUILTIN_SHAPES:
            return ModelDefaults(width=64, height=64, steps=20, cfg_scale=5.0, sampler="DPM++ 2M")
        entry = self._entries.get(name)
        if entry is not None and entry.architecture == "sdxl":
            return ModelDefaults(width=1024, height=1024)
        return ModelDefaults()

    def model_hash(self, entry: ModelEntry) -> str | None:
        """A1111's `Model hash`: first 10 hex of sha256 of the checkpoint file (cached by size and mtime)."""
        weights = self._hashed_file(entry)
        return self.hashes.sha256(weights)[:10] if weights is not None else None

    @staticmethod
    def _hashed_file(entry: ModelEntry) -> Path | None:
        """The file whose sha256 is a model's `Model hash`: the checkpoint, or a built-in model's UNet weights."""
        if entry.kind == "single-file" and entry.path is not None:
            return entry.path
        if entry.kind == "builtin" and entry.path is not None:
            weights = entry.path / "unet" / "diffusion_pytorch_model.safetensors"
            return weights if weights.exists() else None
        return None


def latent_scale_of(folder: Path) -> int:
    """A diffusers folder's latent scale, from its VAE config: each VAE level after the first halves the size."""
    try:
        config = json.loads((folder / "vae" / "config.json").read_text(encoding="utf-8"))
        return int(2 ** (len(config["block_out_channels"]) - 1))
    except (OSError, ValueError, KeyError, TypeError):
        return 8  # unreadable here; loading it will say what is wrong
