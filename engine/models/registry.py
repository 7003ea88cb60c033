"""The model registry: what can be loaded, under which name, and why a file is refused.

Names are what users type: a file or folder name in the models folder (without extension), `builtin:tiny`,
`builtin:shapes`, or a Hugging Face repo id (`owner/name`). Lookups never follow a path out of the models folder.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from engine.errors import ModelUnavailableError
from engine.flux.tiny import TINY_FLUX_FILE, TINY_FLUX_VERSION
from engine.infotext import ModelHint
from engine.models import builtin
from engine.models.configs import inpainting_configs, sd15_config_folder, sdxl_config_folder
from engine.models.entries import ModelEntry, context_width_of, latent_scale_of, scan_path
from engine.models.hashing import HashCache
from engine.models.layers import LayerShapes, layer_shapes_of
from engine.params import GenerationParams, ModelDefaults
from engine.plan import GenerationPlan, ModelTraits, make_plan

log = logging.getLogger(__name__)

BUILTIN_TINY = "builtin:tiny"
BUILTIN_TINY_XL = "builtin:tiny-xl"
BUILTIN_TINY_FLUX = "builtin:tiny-flux"
BUILTIN_SHAPES = "builtin:shapes"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# What each family draws best at when neither the request nor the owner says (A1111's defaults; SDXL's native size).
# Flux.1: Forge's (896x1152, CFG 1 with the distilled CFG at its default, Euler + Simple).
FAMILY_DEFAULTS = {
    "sd1": ModelDefaults(),
    "sdxl": ModelDefaults(width=1024, height=1024),
    "flux": ModelDefaults(width=896, height=1152, cfg_scale=1.0, sampler="Euler", schedule="Simple"),
}


class AdvertisedModel(Protocol):
    """A model a GPU worker on another machine says it holds (`engine.remote.wire.WorkerModel`)."""

    @property
    def hash(self) -> str | None: ...
    @property
    def family(self) -> str: ...
    @property
    def latent_scale(self) -> int: ...
    @property
    def context_width(self) -> int | None: ...


class ModelRegistry:
    """Scans the models folder; resolves names; knows each model's defaults and hash."""

    def __init__(self, models_dir: Path, cache_dir: Path, *, allow_ckpt: bool = False) -> None:
        self.models_dir = models_dir
        self.cache_dir = cache_dir
        self.allow_ckpt = allow_ckpt
        self.hashes = HashCache(cache_dir / "hashes.json")
        self._layers: dict[Path, LayerShapes] = {}
        self._entries: dict[str, ModelEntry] = {}
        self._remote: dict[str, tuple[ModelEntry, str | None]] = {}  # models only GPU workers elsewhere hold
        self.refresh()

    def refresh(self) -> None:
        """Rescan the models folder (cheap: names, headers and small JSON files only, no weights)."""
        entries: dict[str, ModelEntry] = {}
        if builtin.SHAPES_DIR.joinpath("model_index.json").exists():
            shapes = builtin.SHAPES_DIR
            scale, width = latent_scale_of(shapes), context_width_of(shapes)
            entries[BUILTIN_SHAPES] = ModelEntry(
                BUILTIN_SHAPES, "builtin", shapes, latent_scale=scale, context_width=width
            )
        entries[BUILTIN_TINY] = ModelEntry(BUILTIN_TINY, "builtin", None, context_width=32)
        tiny_xl = self.cache_dir / "builtin" / builtin.TINY_XL_VERSION / builtin.TINY_XL_FILE
        entries[BUILTIN_TINY_XL] = ModelEntry(
            BUILTIN_TINY_XL, "builtin", tiny_xl, family="sdxl", context_width=80, easel_config=BUILTIN_TINY_XL
        )
        tiny_flux = self.cache_dir / "builtin" / TINY_FLUX_VERSION / TINY_FLUX_FILE
        entries[BUILTIN_TINY_FLUX] = ModelEntry(BUILTIN_TINY_FLUX, "builtin", tiny_flux, family="flux")
        if self.models_dir.is_dir():
            for path in sorted(self.models_dir.iterdir(), key=lambda p: p.name.lower()):
                entry = scan_path(path, allow_ckpt=self.allow_ckpt)
                if entry is not None and entry.name not in entries:
                    entries[entry.name] = entry
        for name, (entry, _) in self._remote.items():
            entries.setdefault(name, entry)
        self._entries = entries
        log.info("model registry: %d usable, %d refused", len(self.names()), len(self.refused()))

    def set_remote(self, models: Mapping[str, AdvertisedModel]) -> None:
        """The models GPU workers on other machines hold (name -> its family, latent scale, context width and
        hash), as their heartbeats say: listed, resolved and planned for like local ones; a local file of the name
        wins."""
        remote = {
            name: (
                ModelEntry(
                    name, "remote", None, family=m.family, latent_scale=m.latent_scale, context_width=m.context_width
                ),
                m.hash,
            )
            for name, m in models.items()
        }
        if {n: (e.family, e.latent_scale, e.context_width, h) for n, (e, h) in remote.items()} == {
            n: (e.family, e.latent_scale, e.context_width, h) for n, (e, h) in self._remote.items()
        }:
            return
        for name in self._remote:
            if self._entries.get(name) is self._remote[name][0]:
                del self._entries[name]
        self._remote = remote
        for name, (entry, _) in remote.items():
            self._entries.setdefault(name, entry)

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

    def known_hash(self, name: str) -> str | None:
        """A local model's A1111 hash when its file has been hashed already (never hashing now), else None: what a
        job for a remote worker asks its file to have."""
        entry = self._entries.get(name)
        if entry is None or entry.kind == "remote":
            return None
        known = self._known_hash(entry)
        return known[:10] if known is not None else None

    def _known_hash(self, entry: ModelEntry) -> str | None:
        if entry.kind == "remote":
            return self._remote.get(entry.name, (entry, None))[1]
        weights = self._hashed_file(entry)
        return self.hashes.known("sha256", weights) if weights is not None else None

    def default_model(self, configured: str | None) -> str:
        """The configured default, else the first model in the folder, else a built-in one."""
        if configured:
            return self.resolve(configured).name
        for entry in self._entries.values():
            if entry.usable and entry.kind not in ("builtin", "remote"):
                return entry.name
        return BUILTIN_SHAPES if BUILTIN_SHAPES in self._entries else BUILTIN_TINY

    def traits(self, name: str) -> ModelTraits:
        """What a job's plan needs to know of the model (a hub model not in the folder is taken to be SD-like)."""
        entry = self._entries.get(name)
        if entry is None:
            return ModelTraits()
        return ModelTraits(
            family=entry.family,
            latent_scale=entry.latent_scale,
            context_width=entry.context_width,
            inpainting=entry.inpainting,
            ztsnr=entry.ztsnr,
        )

    def single_file_configs(self, entry: ModelEntry) -> Path:
        """The config folder a single-file checkpoint loads with: the built-in one an Easel export names, else its
        family's standard one; for an inpainting checkpoint, a copy whose UNet takes 9 channels."""
        folder = self._base_configs(entry)
        return inpainting_configs(folder, self.cache_dir) if entry.inpainting else folder

    def _base_configs(self, entry: ModelEntry) -> Path:
        if entry.easel_config is not None:
            folders = {BUILTIN_TINY: builtin.tiny_config_folder, BUILTIN_TINY_XL: builtin.tiny_xl_config_folder}
            if entry.easel_config == BUILTIN_SHAPES:
                return builtin.SHAPES_DIR
            if entry.easel_config not in folders:
                raise ModelUnavailableError(
                    f"Model {entry.name!r} names an unknown built-in config {entry.easel_config!r}."
                )
            return folders[entry.easel_config](self.cache_dir)
        return sdxl_config_folder(self.cache_dir) if entry.family == "sdxl" else sd15_config_folder(self.cache_dir)

    def layer_shapes(self, name: str) -> LayerShapes | None:
        """The model's layer shapes from its configs (no weights read; cached), or None where they cannot be known
        before loading (a hub model, a broken folder)."""
        entry = self._entries.get(name)
        if entry is None or not entry.usable or entry.kind == "hub" or entry.family == "flux":
            return None
        try:
            folder: Path | None
            if entry.name == BUILTIN_TINY:
                folder = builtin.tiny_config_folder(self.cache_dir)
            elif entry.kind == "diffusers" or entry.name == BUILTIN_SHAPES:
                folder = entry.path
            else:
                folder = self.single_file_configs(entry)
            if folder is None:
                return None
            if folder not in self._layers:
                self._layers[folder] = layer_shapes_of(folder)
            return self._layers[folder] or None
        except (OSError, ValueError, ModelUnavailableError) as err:
            log.warning("layer shapes of %s unknown: %s", name, err)
            return None

    def plan(self, params: GenerationParams) -> GenerationPlan:
        """A job's plan, made with its model's traits."""
        return make_plan(params, self.traits(params.model))

    def defaults_for(self, name: str) -> ModelDefaults:
        """The model's defaults: its family's, then the owner's settings file for it (the built-ins have their own)."""
        if name in (BUILTIN_TINY, BUILTIN_TINY_XL):
            return ModelDefaults(width=64, height=64, steps=8, cfg_scale=7.0, sampler="Euler")
        if name == BUILTIN_SHAPES:
            return ModelDefaults(width=64, height=64, steps=20, cfg_scale=5.0, sampler="DPM++ 2M")
        if name == BUILTIN_TINY_FLUX:
            return ModelDefaults(width=64, height=64, steps=8, cfg_scale=1.0, sampler="Euler", schedule="Simple")
        entry = self._entries.get(name)
        if entry is None:
            return ModelDefaults()
        base = FAMILY_DEFAULTS.get(entry.family, ModelDefaults())
        if entry.family == "flux" and entry.inpainting:  # Flux.1 Fill: Black Forest Labs' guidance (diffusers' 30)
            base = dataclasses.replace(base, width=1024, height=1024, distilled_cfg_scale=30.0)
        owned = {k: v for k, v in entry.settings.items() if k in ModelDefaults.__dataclass_fields__}
        return dataclasses.replace(base, **owned)

    def model_hash(self, entry: ModelEntry) -> str | None:
        """A1111's `Model hash`: first 10 hex of sha256 of the checkpoint file (cached by size and mtime); a model
        on a remote worker: the hash it advertises."""
        if entry.kind == "remote":
            return self._known_hash(entry)
        weights = self._hashed_file(entry)
        return self.hashes.sha256(weights)[:10] if weights is not None else None

    @staticmethod
    def _hashed_file(entry: ModelEntry) -> Path | None:
        """The file whose sha256 is a model's `Model hash`: the checkpoint, or a built-in model's UNet weights."""
        if entry.kind == "single-file" and entry.path is not None:
            return entry.path
        if entry.kind == "builtin" and entry.path is not None:
            weights = entry.path if entry.path.suffix else entry.path / "unet" / "diffusion_pytorch_model.safetensors"
            return weights if weights.exists() else None
        return None
