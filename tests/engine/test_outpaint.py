"""Zoom Out, Pan and Make Square: the canvas, the picture's place in it, and a mask that spares the picture."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engine.errors import InvalidParamsError
from engine.inpaint import MaskOptions, prepare
from engine.outpaint import outpaint, plan_canvas


def test_canvas_sizes_and_places() -> None:
    assert plan_canvas(512, 768, zoom=2.0) == (1024, 1536, 256, 384)
    assert plan_canvas(512, 768, zoom=1.5) == (768, 1152, 128, 192)
    assert plan_canvas(512, 768, pan="left") == (768, 768, 256, 0)
    assert plan_canvas(512, 768, pan="up") == (512, 1152, 0, 384)
    assert plan_canvas(512, 768, square=True) == (768, 768, 128, 0)
    assert plan_canvas(512, 512, zoom=1.0, aspect=(2, 1)) == (1024, 512, 256, 0)  # Custom Zoom with --ar 2:1
    with pytest.raises(InvalidParamsError, match="Zoom out goes from 1 to 2"):
        plan_canvas(64, 64, zoom=3.0)
    with pytest.raises(InvalidParamsError, match="Pan goes left, right, up, down"):
        plan_canvas(64, 64, pan="sideways")


def test_the_blurred_mask_is_zero_over_the_picture_so_the_overlay_keeps_it() -> None:
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    made = outpaint(picture, max_pixels=1 << 20, zoom=2.0)
    canvas, mask = (Image.open(io.BytesIO(data)) for data in (made.canvas, made.mask))
    x1, y1, x2, y2 = made.box
    assert (made.width, made.height, made.box) == (192, 128, (48, 32, 144, 96))
    prepared = prepare(canvas, mask, MaskOptions(), made.width, made.height)
    assert np.asarray(prepared.mask)[y1:y2, x1:x2].max() == 0
    assert prepared.overlay is not None
    assert (np.asarray(prepared.overlay)[y1:y2, x1:x2, 3] == 255).all()
    assert np.array_equal(np.asarray(canvas.convert("RGB"))[y1:y2, x1:x2], np.asarray(picture))


def test_a_canvas_over_the_pixel_ceiling_is_made_from_a_smaller_picture() -> None:
    made = outpaint(Image.new("RGB", (512, 512), "red"), max_pixels=512 * 512, zoom=2.0)
    assert made.width * made.height <= 512 * 512 and made.width % 8 == 0 and made.height % 8 == 0
