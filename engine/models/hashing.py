"""File hashes as A1111 shows them, cached by path, size and mtime (hashing a 2-7 GB checkpoint takes seconds)."""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from collections.abc import Callable
from pathlib import Path


class HashCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._data: dict[str, dict[str, object]] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self._data = {}

    def _cached(self, kind: str, file: Path, compute: Callable[[Path], str]) -> str:
        stat = file.stat()
        key = f"{kind}:{file.resolve()}"
        with self._lock:
            hit = self._data.get(key)
            if hit and hit.get("size") == stat.st_size and hit.get("mtime") == stat.st_mtime:
                return str(hit["hash"])
        digest = compute(file)
        with self._lock:
            self._data[key] = {"size": stat.st_size, "mtime": stat.st_mtime, "hash": digest}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._data), encoding="utf-8")
            tmp.replace(self.path)
        return digest

    def known(self, kind: str, file: Path) -> str | None:
        """A hash already computed for this file as it is now (same size and mtime); None rather than compute."""
        try:
            stat = file.stat()
        except OSError:
            return None
        with self._lock:
            hit = self._data.get(f"{kind}:{file.resolve()}")
        if hit and hit.get("size") == stat.st_size and hit.get("mtime") == stat.st_mtime:
            return str(hit["hash"])
        return None

    def sha256(self, file: Path) -> str:
        """sha256 of the whole file (checkpoint `Model hash`, TI hashes)."""
        return self._cached("sha256", file, sha256_file)

    def addnet(self, file: Path) -> str:
        """The LoRA "addnet" hash: sha256 of a safetensors file after its 8-byte length and JSON header."""
        return self._cached("addnet", file, addnet_hash)


def sha256_file(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def addnet_hash(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
        fh.seek(8 + header_len)
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
