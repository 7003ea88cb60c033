"""The command line's upscalers: `python main.py upscale` (A1111's Extras), `models` listing them, and a pasted
civitai block whose `Hires upscaler` names a model, with the file installed and without it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.engine.upscaler_files import compact_reference, esrgan_reference, save
from tests.test_main import run_main

pytestmark = pytest.mark.slow  # each test starts Easel as a process

CIVITAI_BLOCK = (
    "a red circle\nNegative prompt: blurry\nSteps: 4, Sampler: Euler, CFG scale: 5, Seed: 3, Size: 64x64, "
    "Model: builtin:shapes, Denoising strength: 0.4, Hires upscale: 2, Hires steps: 2, Hires upscaler: 4x-UltraSharp"
)


def _install(tmp_path: Path) -> None:
    save(esrgan_reference(seed=1), tmp_path / "models" / "ESRGAN" / "4x-UltraSharp.pth")
    save(compact_reference(), tmp_path / "models" / "RealESRGAN" / "realesr-general-x4v3.pth", wrap="params")
    (tmp_path / "models" / "ESRGAN" / "RealESRGAN_x4plus.pt").write_bytes(b"PK torchscript")


def _picture(path: Path, size: tuple[int, int] = (80, 48)) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
        path, pnginfo=_info("a fox\nSteps: 20, Seed: 7, Size: 80x48")
    )


def _info(text: str) -> object:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", text)
    return info


def test_upscale_writes_the_extras_image_keeping_the_parameters(tmp_path: Path) -> None:
    _install(tmp_path)
    _picture(tmp_path / "fox.png")
    result = run_main(
        ["upscale", "fox.png", "--upscaler", "R-ESRGAN General 4xV3", "--scale", "2.5", "--out", "big.png"], tmp_path
    )
    assert result.returncode == 0, result.stderr
    with Image.open(io.BytesIO((tmp_path / "big.png").read_bytes())) as image:
        assert image.size == (200, 120)
        assert image.text["parameters"] == "a fox\nSteps: 20, Seed: 7, Size: 80x48"
        assert image.text["extras"] == "Postprocess upscale by: 2.5, Postprocess upscaler: R-ESRGAN General 4xV3"
    assert "Postprocess upscale by: 2.5, Postprocess upscaler: R-ESRGAN General 4xV3" in result.stdout


def test_upscale_refuses_an_output_over_the_ceiling_in_one_line(tmp_path: Path) -> None:
    _install(tmp_path)
    _picture(tmp_path / "fox.png")
    big = run_main(
        ["upscale", "fox.png", "--scale", "8"], tmp_path, EASEL_MAX_PIXELS="65536", EASEL_MAX_HIRES_PIXELS="65536"
    )
    assert big.returncode == 2 and "Traceback" not in big.stderr
    assert "would make 640x384" in big.stderr and "EASEL_MAX_HIRES_PIXELS" in big.stderr
    assert not (tmp_path / "upscaled.png").exists()  # the other refusals: tests/engine/test_upscalers.py


def test_models_lists_upscalers_with_architecture_scale_or_the_refusal(tmp_path: Path) -> None:
    _install(tmp_path)
    result = run_main(["models"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "4x-UltraSharp\tupscaler, ESRGAN ×4" in result.stdout
    assert "realesr-general-x4v3\tupscaler, Real-ESRGAN Compact ×4" in result.stdout
    assert "RealESRGAN_x4plus\trefused: a .pt file may be a TorchScript program" in result.stdout


def test_a_pasted_model_upscaler_is_used_when_installed_and_noted_when_not(tmp_path: Path) -> None:
    (tmp_path / "without").mkdir()
    missing = run_main(["imagine", "--parameters", CIVITAI_BLOCK, "--out", "a.png"], tmp_path / "without")
    assert missing.returncode == 0, missing.stderr
    assert "Hires upscaler: 4x-UltraSharp is not installed here" in missing.stderr
    assert "`4x-UltraSharp.pth`" in missing.stderr and "Lanczos was used instead" in missing.stderr
    assert "Hires upscaler: Lanczos" in missing.stdout

    _install(tmp_path)
    used = run_main(["imagine", "--parameters", CIVITAI_BLOCK, "--out", "a.png"], tmp_path)
    assert used.returncode == 0, used.stderr
    assert "note:" not in used.stderr
    assert "Hires upscaler: 4x-UltraSharp" in used.stdout and "Size: 64x64" in used.stdout
    with Image.open(tmp_path / "a.png") as image:
        assert image.size == (128, 128)
