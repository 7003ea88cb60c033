"""LoRA files: `<lora:name:weight>` names -> files in the LoRA folder, A1111's hashes, and per-job adapters.

Adapters are loaded into a pipeline once (diffusers + peft, unfused) and switched per job with `set_adapters`;
a job without LoRAs disables them, which gives exactly the base model's output.
"""

from __future__ import annotations

import difflib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import InvalidParamsError
from engine.models.hashing import HashCache
from engine.models.single_file import read_header
from engine.prompts.extra_networks import LoraCall

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoraFile:
    name: str  # the file name without extension: what users type
    path: Path
    alias: str | None  # `ss_output_name` from kohya metadata, also accepted
    hash_hint: str | None  # `sshs_model_hash`, which A1111 prefers over computing the addnet hash


class LoraLibrary:
    """The LoRA folders (ours and any extra, e.g. the built-in shapes LoRAs), scanned by name."""

    def __init__(self, folders: list[Path], hashes: HashCache) -> None:
        self.folders = folders
        self.hashes = hashes
        self._files: dict[str, LoraFile] = {}
        self.refresh()

    @classmethod
    def with_builtins(cls, folders: list[Path], hashes: HashCache) -> LoraLibrary:
        """The given folders and, after them, the LoRAs that come with the built-in models."""
        from engine.models.builtin import SHAPES_LORAS_DIR

        return cls([*folders, SHAPES_LORAS_DIR], hashes)

    def refresh(self) -> None:
        files: dict[str, LoraFile] = {}
        for folder in self.folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*.safetensors")):
                try:
                    metadata = read_header(path).get("__metadata__") or {}
                except (OSError, ValueError):
                    continue
                entry = LoraFile(path.stem, path, metadata.get("ss_output_name"), metadata.get("sshs_model_hash"))
                files.setdefault(entry.name, entry)
        for entry in list(files.values()):
            if entry.alias and entry.alias not in files:
                files[entry.alias] = entry
        self._files = files

    def names(self) -> list[str]:
        return sorted({f.name for f in self._files.values()})

    def resolve(self, name: str) -> LoraFile:
        found = self._files.get(name) or next((f for k, f in self._files.items() if k.lower() == name.lower()), None)
        if found is None:
            close = difflib.get_close_matches(name, list(self._files), n=3, cutoff=0.4)
            hint = f" Closest: {', '.join(close)}." if close else " No LoRAs are installed." if not self._files else ""
            raise InvalidParamsError(f"Unknown LoRA {name!r}.{hint}")
        return found

    def short_hash(self, lora: LoraFile) -> str:
        return (lora.hash_hint or self.hashes.addnet(lora.path))[:12]


def adapter_name(lora: LoraFile) -> str:
    # peft adapter names become module attributes: `train` or dotted names crash, so they are sanitised.
    return "lora_" + re.sub(r"\W", "_", lora.name)


def infotext_hashes(entries: list[tuple[str, str]]) -> str:
    """`Lora hashes` as A1111 writes it: `alias: hash, ...`, with `:` and `,` removed from the aliases."""
    return ", ".join(f"{name.replace(':', '').replace(',', '')}: {digest}" for name, digest in entries)


def apply_loras(pipe: Any, loaded: set[str], loras: list[tuple[LoraFile, LoraCall]]) -> None:
    """Make exactly these LoRAs active on the pipeline at their weights (loading files on first use)."""
    if not loras:
        if loaded:
            pipe.disable_lora()
        return
    names, weights = [], []
    for lora, _ in loras:
        name = adapter_name(lora)
        if name not in loaded:
            log.info("loading LoRA %s", lora.name)
            pipe.load_lora_weights(str(lora.path.parent), weight_name=lora.path.name, adapter_name=name)
            loaded.add(name)
        names.append(name)
    # Weights only for the components a LoRA really patches (diffusers warns on every job otherwise).
    components = pipe.get_list_adapters()
    for (_, call), name in zip(loras, names, strict=True):
        multipliers = {"text_encoder": call.te_multiplier, "unet": call.unet_multiplier}
        weights.append({part: w for part, w in multipliers.items() if name in components.get(part, [])})
    pipe.enable_lora()
    pipe.set_adapters(names, adapter_weights=weights)
