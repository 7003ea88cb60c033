"""The install as a newcomer meets it: `./easel.sh` picks torch's CPU build where there is no NVIDIA GPU (and the
CUDA build where there is one; EASEL_TORCH_INDEX still wins), and says which."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
HAS_NVIDIA = Path("/proc/driver/nvidia/version").exists()


def choice(tmp_path: Path, *, fake_gpu: bool, **env: str) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    if fake_gpu:
        smi.write_text('#!/bin/sh\necho "GPU 0: NVIDIA GeForce RTX 4090"\n', encoding="utf-8")
        smi.chmod(0o755)
    else:
        smi.unlink(missing_ok=True)
    clean = {k: v for k, v in os.environ.items() if k != "EASEL_TORCH_INDEX"}
    # No nvidia-smi of the machine's own on the path when a test says there is no GPU.
    path = f"{bin_dir}:/usr/bin:/bin" if not fake_gpu else f"{bin_dir}:{clean.get('PATH', '/usr/bin:/bin')}"
    result = subprocess.run(
        ["bash", str(ROOT / "easel.sh"), "torch-choice"],
        env={**clean, "PATH": path, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


@pytest.mark.skipif(HAS_NVIDIA, reason="this machine has an NVIDIA driver")
def test_without_an_nvidia_gpu_setup_installs_the_cpu_build(tmp_path: Path) -> None:
    assert choice(tmp_path, fake_gpu=False) == "cpu: no NVIDIA GPU found: torch 2.13.0's CPU build (a 190 MB wheel)"


def test_with_an_nvidia_gpu_setup_installs_the_cuda_build(tmp_path: Path) -> None:
    assert choice(tmp_path, fake_gpu=True).startswith("cuda: an NVIDIA GPU is here: torch 2.13.0 with CUDA")


def test_easel_torch_index_overrides_the_choice(tmp_path: Path) -> None:
    said = choice(tmp_path, fake_gpu=True, EASEL_TORCH_INDEX="https://example.invalid/whl/cu126")
    assert said == "index: torch 2.13.0 from EASEL_TORCH_INDEX (https://example.invalid/whl/cu126)"


@pytest.mark.skipif(HAS_NVIDIA, reason="this machine has an NVIDIA driver")
@pytest.mark.skipif(
    not any(Path(sys.prefix).glob(".easel-installed*")), reason="this venv was not set up by ./easel.sh"
)
def test_the_venv_easel_sh_set_up_has_the_cpu_build() -> None:
    # ./test.sh sets its venv up through easel.sh: on a machine without an NVIDIA GPU it must hold no CUDA torch.
    assert torch.version.cuda is None and torch.__version__.startswith("2.13.0")
