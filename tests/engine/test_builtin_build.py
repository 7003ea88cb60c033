"""Two processes (say two workers sharing a data folder) building a built-in model at once: each writes a folder of
its own and renames it into place, so neither reads or writes the other's half-built files."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engine.models.builtin import build_tiny

pytestmark = pytest.mark.slow  # builds the model twice


def test_two_builds_at_once_both_give_a_whole_model_and_leave_nothing_behind(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        folders = list(pool.map(build_tiny, [tmp_path, tmp_path]))
    assert folders[0] == folders[1] and (folders[0] / "model_index.json").exists()
    assert (folders[0] / "vae" / "diffusion_pytorch_model.safetensors").exists()
    assert not [p.name for p in folders[0].parent.iterdir() if ".partial" in p.name]
