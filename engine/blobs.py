"""A content-addressed store for user uploads (img2img init images), so a stored job can be replayed later."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from engine.errors import InvalidParamsError, StorageFullError, is_disk_full

_HASH = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self.folder / digest
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            try:
                tmp.write_bytes(data)
                tmp.replace(path)  # whole or not at all: a reader never sees half a file under its hash
            except OSError as err:
                tmp.unlink(missing_ok=True)
                if is_disk_full(err):
                    raise StorageFullError(
                        "Easel's disk is full, so your image could not be stored; try again later (an admin has "
                        "been told in the log)."
                    ) from err
                raise
        return digest

    def get(self, digest: str) -> bytes:
        if not _HASH.match(digest):  # a hash, never a path
            raise InvalidParamsError("That init image reference is not valid.")
        path = self.folder / digest
        if not path.exists():
            raise InvalidParamsError("The init image of this job is no longer stored; attach it again.")
        return path.read_bytes()
