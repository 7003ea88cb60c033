"""Inpainting from the command line: --mask and its settings, a transparent init image, an empty mask refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.test_main import run_main

pytestmark = pytest.mark.slow  # each test starts Easel as a process


def _files(tmp_path: Path) -> None:
    y, x = np.mgrid[0:64, 0:64]
    picture = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).astype(np.uint8)
    Image.fromarray(picture).save(tmp_path / "init.png")
    mask = Image.new("L", (64, 64))
    ImageDraw.Draw(mask).rectangle((36, 4, 60, 28), fill=255)
    mask.save(tmp_path / "mask.png")
    Image.new("L", (64, 64)).save(tmp_path / "empty.png")
    holey = Image.fromarray(picture).convert("RGBA")
    holey.paste((0, 0, 0, 0), (36, 4, 61, 29))
    holey.save(tmp_path / "holey.png")


def test_a_mask_redraws_only_its_area_and_the_settings_are_written(tmp_path: Path) -> None:
    _files(tmp_path)
    args = ["imagine", "a red circle", "--init-image", "init.png", "--mask", "mask.png", "--seed", "5"]
    args += ["--mask-blur", "2", "--masked-content", "fill", "--inpaint-area", "masked", "--padding", "8"]
    args += ["--out", "out.png"]
    result = run_main(args, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (
        "Denoising strength: 0.75, Mask blur: 2, Inpaint area: Only masked, Masked area padding: 8, "
        "Masked content: fill" in result.stdout
    )
    drawn, original = (np.asarray(Image.open(tmp_path / name).convert("RGB")) for name in ("out.png", "init.png"))
    assert np.array_equal(drawn[40:, :30], original[40:, :30])  # far from the mask: the original pixels
    assert not np.array_equal(drawn[8:24, 40:56], original[8:24, 40:56])


def test_a_transparent_init_image_redraws_its_transparent_area(tmp_path: Path) -> None:
    _files(tmp_path)
    result = run_main(["imagine", "a red circle", "--init-image", "holey.png", "--out", "out.png"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Mask blur: 4" in result.stdout
    drawn = np.asarray(Image.open(tmp_path / "out.png").convert("RGB"))
    original = np.asarray(Image.open(tmp_path / "init.png"))
    assert np.array_equal(drawn[40:, :20], original[40:, :20])


def test_an_empty_or_unreadable_mask_is_refused_in_one_line(tmp_path: Path) -> None:
    _files(tmp_path)
    result = run_main(["imagine", "x", "--init-image", "init.png", "--mask", "empty.png"], tmp_path)
    assert result.returncode == 2 and "The mask is empty" in result.stderr and "Traceback" not in result.stderr
    alone = run_main(["imagine", "x", "--mask", "mask.png"], tmp_path)
    assert alone.returncode == 2 and "go with --init-image" in alone.stderr


@pytest.mark.parametrize(
    ("flags", "size", "place"),
    [
        (["--zoom-out", "2"], (128, 128), (32, 32)),
        (["--pan", "left"], (96, 64), (32, 0)),
    ],
)
def test_zoom_out_and_pan_keep_the_picture_pixel_exact_in_its_place(  # the other shapes: tests/engine/test_outpaint
    tmp_path: Path, flags: list[str], size: tuple[int, int], place: tuple[int, int]
) -> None:
    _files(tmp_path)
    result = run_main(["imagine", "a red circle", "--init-image", "init.png", *flags, "--out", "out.png"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"Size: {size[0]}x{size[1]}" in result.stdout and "Masked content: fill" in result.stdout
    drawn = np.asarray(Image.open(tmp_path / "out.png").convert("RGB"))
    original = np.asarray(Image.open(tmp_path / "init.png"))
    x, y = place
    assert drawn.shape[:2] == (size[1], size[0])
    assert np.array_equal(drawn[y : y + 64, x : x + 64], original)
