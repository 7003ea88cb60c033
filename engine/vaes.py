"""The VAE folder (A1111's `models/VAE`): `.safetensors` VAEs by file name, the family each was made for, and why a
file is refused. Reads only headers; no torch here (the loader turns a file into a VAE for a loaded model).

An SD 1.x VAE and an SDXL VAE have the same architecture, so the header alone cannot tell them apart: the family is
the owner's (`<file>.easel.json` with `{"family": "sdxl"}`), else the file's `modelspec.architecture` metadata, else
its name (`sdxl_vae`, `sdxl-vae-fp16-fix` say SDXL; `vae-ft-mse-840000`, `kl-f8-anime2` say SD 1.x). A VAE of unknown
family is offered for both; one of a known family is refused for the other.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import InvalidParamsError
from engine.models.detect import FAMILY_NAMES
from engine.models.hashing import HashCache
from engine.models.single_file import read_header

SIDECAR_SUFFIX = ".easel.json"
_SDXL_NAME = re.compile(r"(^|[^a-z])(sd)?xl([^a-z]|$)")
_SD1_NAME = re.compile(r"sd-?1|sd15|v1-5|ft-mse|ft-ema|kl-f8|840000|560000")
_PREFIXES = ("first_stage_model.", "vae.")


@dataclass(frozen=True)
class VaeFile:
    name: str  # the file name with its extension, as A1111 writes `VAE:`
    path: Path
    family: str | None  # "sd1", "sdxl", or None where nothing tells
    refused: str | None = None

    @property
    def stem(self) -> str:
        return self.name.removesuffix(".safetensors")


def vae_traits(name: str, header: dict[str, Any], sidecar: dict[str, Any]) -> tuple[str | None, str | None]:
    """(family, refusal) of a VAE file from its header, its settings file and its name."""
    keys = {k.removeprefix(_prefix(header)) for k in header if k != "__metadata__"}
    if "decoder.conv_in.weight" not in keys or "encoder.conv_in.weight" not in keys:
        return None, "not a VAE (no encoder and decoder weights)"
    entry = header.get(_prefix(header) + "decoder.conv_in.weight")
    channels = entry.get("shape", [0, 0])[1] if isinstance(entry, dict) else 0
    if channels != 4:
        if channels == 16:  # Flux's ae: not a choice for SD models, but found here by the Flux models that need it
            return None, "a 16-channel VAE: Flux models use it as their ae module; SD models take 4-channel VAEs"
        return None, f"a {channels}-channel VAE: SD models take 4-channel VAEs"
    if isinstance(sidecar.get("family"), str) and sidecar["family"] in ("sd1", "sdxl"):
        return sidecar["family"], None
    metadata = header.get("__metadata__") or {}
    architecture = str(metadata.get("modelspec.architecture", "")).lower()
    if "xl" in architecture:
        return "sdxl", None
    if "v1" in architecture:
        return "sd1", None
    lowered = name.lower()
    if _SDXL_NAME.search(lowered):
        return "sdxl", None
    if _SD1_NAME.search(lowered):
        return "sd1", None
    return None, None


def _prefix(header: dict[str, Any]) -> str:
    return next((p for p in _PREFIXES if any(k.startswith(p) for k in header)), "")


class VaeLibrary:
    """The VAE folders, scanned by file name."""

    def __init__(self, folders: list[Path], hashes: HashCache) -> None:
        self.folders = folders
        self.hashes = hashes
        self._files: dict[str, VaeFile] = {}
        self.refresh()

    def refresh(self) -> None:
        files: dict[str, VaeFile] = {}
        for folder in self.folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*.safetensors")):
                if path.name in files:
                    continue
                try:
                    header = read_header(path)
                    sidecar = _sidecar(path.with_name(path.stem + SIDECAR_SUFFIX))
                except (OSError, ValueError) as err:
                    files[path.name] = VaeFile(path.name, path, None, f"unreadable: {err}")
                    continue
                family, refused = vae_traits(path.name, header, sidecar)
                files[path.name] = VaeFile(path.name, path, family, refused)
        self._files = files

    def entries(self) -> list[VaeFile]:
        return list(self._files.values())

    def names(self) -> list[str]:
        return sorted(f.name for f in self._files.values() if f.refused is None)

    def names_for(self, family: str) -> list[str]:
        return sorted(f.name for f in self._files.values() if f.refused is None and f.family in (None, family))

    def resolve(self, name: str) -> VaeFile:
        """The VAE for what a user typed or pasted: the file name, with or without `.safetensors`, case forgiven."""
        wanted = name.strip().lower()
        for vae in self._files.values():
            if wanted in (vae.name.lower(), vae.stem.lower()):
                if vae.refused is not None:
                    raise InvalidParamsError(f"VAE {vae.name!r} is refused: {vae.refused}.")
                return vae
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.4)
        hint = f" Closest: {', '.join(close)}." if close else " No VAEs are installed." if not self._files else ""
        raise InvalidParamsError(f"Unknown VAE {name!r}.{hint}")

    def check(self, name: str, family: str) -> VaeFile:
        """The VAE, if it fits a model of `family`; InvalidParamsError saying why not."""
        vae = self.resolve(name)
        if vae.family is not None and vae.family != family:
            raise InvalidParamsError(
                f"VAE {vae.name!r} is made for {FAMILY_NAMES[vae.family]} models, and this model is "
                f"{FAMILY_NAMES.get(family, family)}."
            )
        return vae

    def short_hash(self, vae: VaeFile) -> str:
        """A1111's `VAE hash`: the first 10 hex of the file's sha256."""
        return self.hashes.sha256(vae.path)[:10]


def _sidecar(path: Path) -> dict[str, Any]:
    if not path.is_file() or path.stat().st_size > 64 * 1024:
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}
