"""Textual-inversion embeddings (A1111 `modules/textual_inversion`): files in the embeddings folders, named by their
file stem, found anywhere in a prompt's token stream and substituted after CLIP's token-embedding lookup.

SD 1.x files (`string_to_param`, `emb_params` or any single tensor) and SDXL files (`clip_l` and `clip_g` tensors, one
for each text encoder) are read. `.pt`/`.bin` are pickles: they are opened with `torch.load(weights_only=True)` only,
and a file that needs more is refused, never executed.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

SUFFIXES = (".safetensors", ".pt", ".bin")
MAX_VECTORS = 75  # one chunk: an embedding never straddles two


SD1_PART = ""  # the key of an SD 1.x file's one tensor in `Embedding.parts`
SDXL_PARTS = ("clip_l", "clip_g")


@dataclass(frozen=True, eq=False)
class Embedding:
    """One usable embedding: `parts` maps a text encoder's key to its (count, width) vectors, float32 on the CPU
    (`""` for an SD 1.x file; `clip_l` and `clip_g` for an SDXL one)."""

    name: str
    path: Path
    parts: dict[str, torch.Tensor]
    sha256: str

    @property
    def vectors(self) -> torch.Tensor:
        """The vectors of an SD 1.x file (an SDXL file's first part)."""
        return self.parts.get(SD1_PART, next(iter(self.parts.values())))

    @property
    def count(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def width(self) -> int:
        """What the file fits, as A1111 checks it: the text encoder's width (both SDXL encoders' together)."""
        return sum(int(t.shape[1]) for t in self.parts.values())

    @property
    def family(self) -> str:
        return "sdxl" if SDXL_PARTS[0] in self.parts else "sd1"

    def part(self, key: str) -> torch.Tensor:
        """The vectors for the encoder that reads `key`."""
        return self.parts.get(key, self.vectors)

    @property
    def short_hash(self) -> str:
        """What A1111 writes in `TI hashes`: the first 12 hex digits of the whole file's sha256."""
        return self.sha256[:12]


@dataclass(frozen=True)
class RefusedEmbedding:
    """A file in the folder that cannot be used here; a prompt naming it is refused with `reason`."""

    name: str
    path: Path
    reason: str


class EmbeddingFileError(ValueError):
    """The file is not a textual-inversion embedding Easel can read safely."""


def load_embedding(path: Path) -> Embedding:
    """Read one embedding file; raise EmbeddingFileError with a reason a person can act on."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    content: Any
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load

        try:
            content = load(data)
        except SafetensorError as err:
            raise EmbeddingFileError(f"not a readable safetensors file ({_first_line(err)})") from err
    else:
        try:
            content = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as err:  # the unpickler raises many types; whatever it is, the file is not loaded
            raise EmbeddingFileError(
                f"torch.load(weights_only=True) refused it ({_first_line(err)}); convert it to .safetensors"
            ) from err
    return Embedding(path.stem, path, _parts(content), digest)


def _parts(content: Any) -> dict[str, torch.Tensor]:
    """A1111's `create_embedding_from_data`: the vectors per text encoder."""
    if not isinstance(content, dict):
        raise EmbeddingFileError("not a textual-inversion embedding (expected a dict of tensors)")
    if "clip_l" in content and "clip_g" in content:
        parts = {key: _checked(content[key]) for key in SDXL_PARTS}
        if parts["clip_l"].shape[0] != parts["clip_g"].shape[0]:
            raise EmbeddingFileError("its clip_l and clip_g tensors hold different numbers of vectors")
        return parts
    return {SD1_PART: _vectors(content)}


def _vectors(content: dict[str, Any]) -> torch.Tensor:
    if "string_to_param" in content:
        params = content["string_to_param"]
        if not isinstance(params, dict) or len(params) != 1:
            raise EmbeddingFileError("its string_to_param must hold exactly one tensor")
        tensor = next(iter(params.values()))
    elif len(content) == 1 and isinstance(next(iter(content.values())), torch.Tensor):
        tensor = next(iter(content.values()))  # emb_params (kohya) or {"<token>": tensor} (diffusers)
    else:
        raise EmbeddingFileError(
            "not a textual-inversion embedding (expected string_to_param, emb_params, clip_l and clip_g, or one tensor)"
        )
    return _checked(tensor)


def _checked(value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise EmbeddingFileError("its vectors are not a floating-point tensor")
    tensor: torch.Tensor = value
    if tensor.dim() == 1:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 2 or tensor.shape[0] == 0:
        raise EmbeddingFileError(f"its vectors have shape {tuple(tensor.shape)}, expected (count, width)")
    if tensor.shape[0] > MAX_VECTORS:
        raise EmbeddingFileError(f"it has {tensor.shape[0]} vectors; at most {MAX_VECTORS} fit in a prompt chunk")
    return tensor.detach().to(torch.float32).contiguous()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:200]


class TokenLookup:
    """A1111's `ids_lookup` for one tokenizer and text-encoder width: first token -> candidates, longest first."""

    def __init__(self, entries: Iterable[tuple[list[int], Embedding | RefusedEmbedding]]) -> None:
        self._by_first: dict[int, list[tuple[list[int], Embedding | RefusedEmbedding]]] = {}
        for ids, item in entries:
            if ids:
                self._by_first.setdefault(ids[0], []).append((ids, item))
        for candidates in self._by_first.values():
            candidates.sort(key=lambda c: len(c[0]), reverse=True)

    def find(self, tokens: Sequence[int], offset: int) -> tuple[Embedding | RefusedEmbedding, int] | None:
        """`find_embedding_at_position`: the embedding whose name's tokens start at `offset`, and their count."""
        for ids, item in self._by_first.get(tokens[offset], ()):
            if list(tokens[offset : offset + len(ids)]) == ids:
                return item, len(ids)
        return None


class EmbeddingDB:
    """The embedding files of some folders, rescanned when a folder changes (no restart needed, as in A1111).

    A rescan may come from another thread (the catalog's, on an admin's refresh) than the GPU worker's lookups,
    hence the lock.
    """

    def __init__(self, folders: Sequence[Path]) -> None:
        self.folders = list(folders)
        self._lock = threading.RLock()
        self.version = 0  # bumped on every rescan; conditioning caches key on it
        self._embeddings: dict[str, Embedding] = {}
        self._refused: dict[str, RefusedEmbedding] = {}
        self._mtimes: dict[Path, float] = {}
        self._lookups: dict[tuple[int, int], tuple[Any, TokenLookup]] = {}
        self.refresh()

    def refresh(self) -> None:
        with self._lock:
            self._rescan()

    def _rescan(self) -> None:
        embeddings: dict[str, Embedding] = {}
        refused: dict[str, RefusedEmbedding] = {}
        mtimes: dict[Path, float] = {}
        for folder in self.folders:
            if not folder.is_dir():
                continue
            mtimes[folder] = folder.stat().st_mtime
            for path in sorted(folder.rglob("*")):
                if path.is_dir():
                    mtimes[path] = path.stat().st_mtime
                    continue
                if path.suffix.lower() not in SUFFIXES or path.stat().st_size == 0:
                    continue
                if path.stem in embeddings or path.stem in refused:
                    log.warning("embedding %s: the name is taken by an earlier file; %s is not used", path.stem, path)
                    continue
                try:
                    embeddings[path.stem] = load_embedding(path)
                except (EmbeddingFileError, OSError) as err:
                    log.warning("embedding %s refused: %s", path, err)
                    refused[path.stem] = RefusedEmbedding(path.stem, path, str(err))
        self._embeddings, self._refused, self._mtimes = embeddings, refused, mtimes
        self._lookups.clear()
        self.version += 1

    def refresh_if_changed(self) -> bool:
        """Rescan when a folder was added to, removed from or renamed in (its mtime moved)."""
        current: dict[Path, float] = {}
        for folder in self.folders:
            if folder.is_dir():
                current[folder] = folder.stat().st_mtime
                current.update({p: p.stat().st_mtime for p in folder.rglob("*") if p.is_dir()})
        with self._lock:
            if current == self._mtimes:
                return False
            self._rescan()
            return True

    def names(self) -> list[str]:
        return sorted(self._embeddings)

    def get(self, name: str) -> Embedding | None:
        return self._embeddings.get(name)

    def refused(self) -> list[RefusedEmbedding]:
        return sorted(self._refused.values(), key=lambda r: r.name)

    def lookup(self, tokenizer: Any, width: int) -> TokenLookup:
        """Names tokenized as prompts are (CLIP lower-cases, so `EasyNegative` = `easynegative`). An embedding
        of another width than the text encoder's is a refusal here: it was made for another model family."""
        with self._lock:
            self.refresh_if_changed()
            return self._lookup(tokenizer, width)

    def _lookup(self, tokenizer: Any, width: int) -> TokenLookup:
        key = (id(tokenizer), width)
        cached = self._lookups.get(key)
        if cached is not None and cached[0] is tokenizer:
            return cached[1]
        items: list[Embedding | RefusedEmbedding] = [*self._embeddings.values(), *self._refused.values()]
        names = [item.name for item in items]
        ids = tokenizer(names, truncation=False, add_special_tokens=False)["input_ids"] if names else []
        entries: list[tuple[list[int], Embedding | RefusedEmbedding]] = []
        for name_ids, item in zip(ids, items, strict=True):
            usable: Embedding | RefusedEmbedding = item
            if isinstance(item, Embedding) and item.width != width:
                kind = "an SDXL embedding" if item.family == "sdxl" else "an SD 1.x embedding"
                usable = RefusedEmbedding(
                    item.name,
                    item.path,
                    f"it is {kind}, its vectors are {item.width} wide but this model takes {width}-wide ones "
                    "(it was made for another model family)",
                )
            entries.append(([int(i) for i in name_ids], usable))
        lookup = TokenLookup(entries)
        self._lookups[key] = (tokenizer, lookup)
        return lookup


def ti_hashes(embeddings: Iterable[Embedding]) -> str | None:
    """`TI hashes` as A1111 writes it: `name: 12-hex, ...` (`:` and `,` removed from names), or None if empty."""
    seen = dict.fromkeys((e.name.replace(":", "").replace(",", ""), e.short_hash) for e in embeddings)
    return ", ".join(f"{name}: {digest}" for name, digest in seen) or None
