"""What a prompt can use besides the model: the installed LoRAs (A1111 short hash, kohya trigger words, base model)
and textual-inversion embeddings, as plain values for the bot. Reads only safetensors headers; no torch here.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from engine.detectors.files import DetectorFile, DetectorLibrary
from engine.errors import InvalidParamsError
from engine.loras import LoraLibrary
from engine.models.layers import LayerShapes
from engine.models.single_file import read_header
from engine.plan import ModelTraits
from engine.prompts.extra_networks import read_loras
from engine.taggers.files import TaggerFile, TaggerLibrary
from engine.upscalers.files import A1111_NAMES, UpscalerFile, UpscalerLibrary
from engine.vaes import VaeLibrary

log = logging.getLogger(__name__)

MAX_TRIGGER_WORDS = 5


@dataclass(frozen=True)
class LoraInfo:
    name: str  # what goes in `<lora:name:weight>`
    short_hash: str | None  # A1111's 12-hex `Lora hashes` value; None when the file could not be read
    trigger_words: tuple[str, ...]
    base_model: str | None  # kohya's `ss_base_model_version`, e.g. `sd_v1`
    family: str | None = None  # the model family it was made for, where the file tells ("sd1", "sdxl")
    refused: str | None = None  # why the file is not offered as a LoRA


@dataclass(frozen=True)
class EmbeddingInfo:
    name: str  # what a prompt writes to use it
    vectors: int | None  # None when refused
    refused: str | None = None
    family: str | None = None  # "sd1" or "sdxl"


class _Embedding(Protocol):
    @property
    def count(self) -> int: ...
    @property
    def family(self) -> str: ...


class _RefusedEmbedding(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def reason(self) -> str: ...


class EmbeddingSource(Protocol):
    """The part of `engine.embeddings.EmbeddingDB` used here (that module imports torch; this one does not)."""

    def refresh(self) -> None: ...
    def names(self) -> list[str]: ...
    def get(self, name: str) -> _Embedding | None: ...
    def refused(self) -> Sequence[_RefusedEmbedding]: ...


def trigger_words(metadata: Mapping[str, object]) -> tuple[str, ...]:
    """`modelspec.trigger_phrase` if the author set one, else the most frequent training tags (`ss_tag_frequency`,
    summed over the dataset folders; ties by name)."""
    phrase = metadata.get("modelspec.trigger_phrase")
    if isinstance(phrase, str) and phrase.strip():
        return (phrase.strip(),)
    raw = metadata.get("ss_tag_frequency")
    if not isinstance(raw, str):
        return ()
    try:
        folders = json.loads(raw)
    except ValueError:
        return ()
    counts: Counter[str] = Counter()
    if isinstance(folders, dict):
        for tags in folders.values():
            if isinstance(tags, dict):
                for tag, count in tags.items():
                    if isinstance(count, int | float) and str(tag).strip():
                        counts[str(tag).strip()] += int(count)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return tuple(tag for tag, _ in ranked[:MAX_TRIGGER_WORDS])


def base_model(metadata: Mapping[str, object]) -> str | None:
    for key in ("ss_base_model_version", "modelspec.architecture"):
        value = metadata.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _metadata(path: Path) -> Mapping[str, object]:
    try:
        found = read_header(path).get("__metadata__")
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


class ExtraNetworks:
    """LoRAs, embeddings and VAEs for the bot. File reads and hashing (a LoRA's addnet hash reads the whole file) run
    on this catalog's own thread, never on the event loop and never on the GPU worker."""

    def __init__(
        self,
        loras: LoraLibrary,
        embeddings: EmbeddingSource,
        vaes: VaeLibrary | None = None,
        upscalers: UpscalerLibrary | None = None,
        detectors: DetectorLibrary | None = None,
        taggers: TaggerLibrary | None = None,
    ) -> None:
        self._loras = loras
        self._embeddings = embeddings
        self._vaes = vaes or VaeLibrary([], loras.hashes)
        self._upscalers = upscalers or UpscalerLibrary([])
        self._detectors = detectors or DetectorLibrary([])
        self._taggers = taggers or TaggerLibrary([])
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="easel-catalog")

    def lora_names(self) -> list[str]:
        return self._loras.names()

    def resolve_lora(self, name: str) -> str:
        """The installed name for what a user typed (case and kohya alias forgiven); InvalidParamsError naming the
        closest ones otherwise."""
        return self._loras.resolve(name.strip()).name

    def check_prompt(self, *prompts: str, traits: ModelTraits | None = None, layers: LayerShapes | None = None) -> None:
        """Refuse, before anything is queued, the extra-network tags the pipeline would refuse at generation: an
        unknown or unusable LoRA, one made for another model family (given the model's traits), or one whose layers
        do not fit the model's (given its layer shapes)."""
        for prompt in prompts:
            for call in read_loras(prompt)[1]:
                lora = self._loras.resolve(call.name)
                misfit = lora.misfit(traits.family, traits.context_width) if traits is not None else None
                if misfit is None and layers is not None:
                    misfit = lora.layer_misfit(layers)
                if misfit is not None:
                    raise InvalidParamsError(misfit + ".")

    def vae_names(self, family: str | None = None) -> list[str]:
        """The usable VAEs (those that fit `family`, when given)."""
        return self._vaes.names() if family is None else self._vaes.names_for(family)

    def resolve_vae(self, name: str, family: str) -> str:
        """The VAE file's name for what a user typed, if it fits the family; InvalidParamsError saying why not."""
        return self._vaes.check(name, family).name

    def upscaler_names(self) -> list[str]:
        """The usable upscaler models, by the names requests use."""
        return self._upscalers.names()

    def resolve_upscaler(self, name: str) -> str:
        """The name a job carries for an upscaler model: A1111's built-in name where one was asked for and its
        standard file is here (`R-ESRGAN 4x+`), else the file's stem; InvalidParamsError naming the closest."""
        found = self._upscalers.resolve(name)
        return name.strip() if A1111_NAMES.get(name.strip(), "").lower() == found.name.lower() else found.name

    def detector_names(self) -> list[str]:
        """The usable detectors, by the names requests use (their files' stems)."""
        return self._detectors.names()

    def resolve_detector(self, name: str) -> str:
        """The installed detector for a name (ADetailer's `face_yolov8n.pt` finds `face_yolov8n.safetensors`);
        InvalidParamsError saying why not."""
        return self._detectors.resolve(name).name

    def has_detector(self, name: str) -> bool:
        found = self._detectors.find(name)
        return found is not None and found.refused is None

    def detectors(self) -> list[DetectorFile]:
        """Every file in the detector folders: what it is, or why it is refused."""
        return self._detectors.entries()

    def tagger_names(self) -> list[str]:
        return self._taggers.names()

    def resolve_tagger(self, name: str | None) -> str:
        """The installed tagger for a name, or the first installed for none; InvalidParamsError saying why not."""
        return self._taggers.resolve(name).name

    def taggers(self) -> list[TaggerFile]:
        """Every tagger folder: its input size and tag count, or why it is refused."""
        return self._taggers.entries()

    def upscalers(self) -> list[UpscalerFile]:
        """Every file in the upscaler folders: architecture and scale, or why it is refused."""
        return self._upscalers.entries()

    async def loras(self) -> list[LoraInfo]:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._describe_loras)

    def _describe_loras(self) -> list[LoraInfo]:
        found = []
        for name in self._loras.names():
            lora = self._loras.resolve(name)
            metadata = _metadata(lora.path)
            try:
                digest: str | None = self._loras.short_hash(lora)
            except (OSError, ValueError):  # removed or truncated since the last scan
                digest = None
            found.append(LoraInfo(lora.name, digest, trigger_words(metadata), base_model(metadata), lora.family))
        found += [LoraInfo(name, None, (), None, refused=reason) for name, reason in self._loras.refused().items()]
        return sorted(found, key=lambda lora: lora.name.lower())

    def refused_loras(self) -> int:
        """How many files in the LoRA folders are not offered (see `loras()` for why)."""
        return len(self._loras.refused())

    def embeddings(self) -> list[EmbeddingInfo]:
        usable = []
        for name in self._embeddings.names():
            embedding = self._embeddings.get(name)
            if embedding is not None:
                usable.append(EmbeddingInfo(name, embedding.count, family=embedding.family))
        refused = [EmbeddingInfo(r.name, None, r.reason) for r in self._embeddings.refused()]
        return sorted(usable + refused, key=lambda e: e.name.lower())

    async def refresh(self) -> None:
        """Rescan the LoRA and embedding folders (what `/model refresh` does besides the models)."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._refresh)

    def _refresh(self) -> None:
        self._loras.refresh()
        self._embeddings.refresh()
        self._vaes.refresh()
        self._upscalers.refresh()
        self._detectors.refresh()
        self._taggers.refresh()
        log.info(
            "rescanned: %d LoRA(s), %d embedding(s), %d VAE(s), %d upscaler(s)",
            len(self._loras.names()),
            len(self._embeddings.names()),
            len(self._vaes.names()),
            len(self._upscalers.names()),
        )

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
