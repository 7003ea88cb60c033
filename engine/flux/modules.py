"""The files a Flux.1 transformer needs beside it (Forge's "VAE / Text Encoder" modules): the 16-channel `ae`, the
CLIP-L text encoder and the T5-XXL encoder, found in the VAE folder and the text encoder folder by what their
tensors are (the names only break ties and are what the parameter text records). Headers only; no torch here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ModelUnavailableError
from engine.models.single_file import read_header

KINDS = ("ae", "clip_l", "t5xxl")
KIND_NAMES = {"ae": "Flux VAE (ae)", "clip_l": "CLIP-L text encoder", "t5xxl": "T5-XXL text encoder"}
# Where each kind's tensors sit in a full checkpoint (ComfyUI's and Forge's layout) and in the separate files.
PREFIXES = {
    "ae": ("vae.", "first_stage_model.", ""),
    "clip_l": ("text_encoders.clip_l.transformer.", "cond_stage_model.transformer.", ""),
    "t5xxl": ("text_encoders.t5xxl.transformer.", ""),
}
_MARKERS = {
    "ae": "decoder.conv_in.weight",
    "clip_l": "embeddings.token_embedding.weight",
    "t5xxl": "encoder.block.0.layer.0.SelfAttention.q.weight",
}


@dataclass(frozen=True)
class Module:
    kind: str
    path: Path
    prefix: str  # where its tensors start in the file ("" for a separate file)

    @property
    def name(self) -> str:
        """The stem Forge writes as `Module N: <name>`."""
        return self.path.name.removesuffix(".safetensors")


def module_prefix(kind: str, keys: Iterable[str]) -> str | None:
    """Where a module of `kind` starts among a file's tensor names, or None when the file has none."""
    names = set(keys)
    marker = _MARKERS[kind]
    for prefix in PREFIXES[kind]:
        for key in names:
            if key.startswith(prefix) and key.endswith(marker):
                middle = key[len(prefix) : -len(marker)]
                if middle in ("", "text_model."):
                    return prefix
    return None


def kind_of(header: Mapping[str, Any]) -> str | None:
    """Which module a separate file is: a 16-channel VAE is an `ae`; a CLIP or T5 text encoder by its tensors."""
    keys = [k for k in header if k != "__metadata__"]
    for kind in KINDS:
        prefix = module_prefix(kind, keys)
        if prefix is None or prefix.startswith(("text_encoders.", "cond_stage_model.")):
            continue
        if kind == "ae":
            conv = header.get(prefix + "decoder.conv_in.weight")
            if not (isinstance(conv, Mapping) and list(conv.get("shape", []))[1:2] == [16]):
                continue
            if any(k.startswith(("model.diffusion_model.", "double_blocks.")) for k in keys):
                continue
        return kind
    return None


class FluxModules:
    """The module files installed in the given folders, by kind (re-read on `refresh`)."""

    def __init__(self, folders: Sequence[Path]) -> None:
        self.folders = list(folders)
        self._found: dict[str, list[Module]] = {}
        self.refresh()

    def refresh(self) -> None:
        found: dict[str, list[Module]] = {kind: [] for kind in KINDS}
        for folder in self.folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.safetensors")):
                try:
                    kind = kind_of(read_header(path))
                except (OSError, ValueError):
                    continue
                if kind is not None:
                    found[kind].append(Module(kind, path, ""))
        self._found = found

    def installed(self, kind: str) -> list[Module]:
        return list(self._found.get(kind, []))

    def pick(self, kind: str, wanted: str | None = None) -> Module:
        """The module of `kind` to use: the one named `wanted` (a pasted `Module N`), else the one whose name says
        its kind (`ae`, `clip_l`, `t5xxl_fp16` before `t5xxl_fp8_e4m3fn`), else the first. The folders are read
        again first (headers only), so a file installed since is found without a refresh."""
        self.refresh()
        candidates = self.installed(kind)
        if wanted is not None:
            for module in candidates:
                if module.name.lower() == wanted.lower():
                    return module
        if not candidates:
            folders = " or ".join(str(f) for f in self.folders) or "no folder is set"
            raise ModelUnavailableError(
                f"A Flux model needs a {KIND_NAMES[kind]} file beside it, and none is installed (looked in "
                f"{folders}). {_WHERE[kind]}"
            )
        return sorted(candidates, key=lambda m: _preference(kind, m.name))[0]


_WHERE = {
    "ae": "Put Black Forest Labs' ae.safetensors (the Flux VAE) in the VAE folder.",
    "clip_l": "Put clip_l.safetensors in the text encoder folder.",
    "t5xxl": "Put t5xxl_fp16.safetensors (or t5xxl_fp8_e4m3fn.safetensors) in the text encoder folder.",
}


def _preference(kind: str, name: str) -> tuple[int, str]:
    lowered = name.lower()
    if kind == "ae":
        return (0 if lowered == "ae" else 1 if "flux" in lowered or "ae" in lowered else 2, lowered)
    if kind == "clip_l":
        return (0 if "clip_l" in lowered else 1, lowered)
    return (0 if "fp16" in lowered else 1 if "t5" in lowered else 2, lowered)
