"""The blob store (init images): a full disk is a clear error, and leaves no half-written file behind."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from engine.blobs import BlobStore
from engine.errors import StorageFullError

DEV_FULL = Path("/dev/full")  # every write to it fails with ENOSPC, as on a full disk


def full_disk_for(folder: Path, data: bytes) -> None:
    """The next write of `data` into `folder` lands on /dev/full."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{hashlib.sha256(data).hexdigest()}.tmp").symlink_to(DEV_FULL)


@pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_is_a_clear_error_and_leaves_nothing_behind(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    kept = blobs.put(b"an earlier image")
    data = b"\x89PNG" + b"\0" * 100_000
    full_disk_for(tmp_path / "blobs", data)
    with pytest.raises(StorageFullError, match="disk is full"):
        blobs.put(data)
    assert sorted(p.name for p in (tmp_path / "blobs").iterdir()) == [kept]  # no .tmp, nothing under the hash
    assert blobs.get(kept) == b"an earlier image"
    assert blobs.put(data) == hashlib.sha256(data).hexdigest()  # space again: stored whole
    assert blobs.get(hashlib.sha256(data).hexdigest()) == data
