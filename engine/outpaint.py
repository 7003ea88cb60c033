"""Midjourney's Zoom Out, Pan and Make Square as inpainting jobs: a larger canvas with the picture in place and a
mask of the new area, both computed here (pure PIL/numpy); the job is then an ordinary A1111 inpaint.

The picture's own pixels come back exactly: the mask's white area stops short of the picture by the blur's reach,
so the blurred mask is zero over the whole picture and A1111's overlay puts every one of its pixels back. The strip
between is pre-filled with A1111's `fill` (the picture's colours, blurred outwards) and blended by the overlay.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from engine.errors import InvalidParamsError
from engine.inpaint import blur_kernel, fill

PANS = ("left", "right", "up", "down")
PAN_FRACTION = 0.5  # a pan extends the side by half the picture, as Midjourney's
OUTPAINT_BLUR = 4  # A1111's default mask blur
OUTPAINT_DENOISING = 1.0  # the new area is drawn from scratch
OUTPAINT_CONTENT = "fill"  # measured on builtin:shapes: see the README's "Zoom Out and Pan"


@dataclass(frozen=True)
class Outpaint:
    """The job's init image and mask (PNG bytes), its size, and where the picture sits in it."""

    canvas: bytes
    mask: bytes
    width: int
    height: int
    box: tuple[int, int, int, int]  # the picture's (x1, y1, x2, y2) in the canvas


def _multiple_of_8(value: float) -> int:
    return max(8, int(value) // 8 * 8)


def plan_canvas(
    width: int,
    height: int,
    *,
    zoom: float = 1.0,
    pan: str | None = None,
    square: bool = False,
    aspect: tuple[float, float] | None = None,
) -> tuple[int, int, int, int]:
    """(canvas width, canvas height, x, y): the new size, multiples of 8, and the picture's place in it. A zoom may
    also take a new aspect ratio (Midjourney's Custom Zoom with `--ar`): the canvas grows to it, never crops."""
    if pan is not None:
        if pan not in PANS:
            raise InvalidParamsError(f"Pan goes {', '.join(PANS)}, not {pan[:20]!r}.")
        grow_w = _multiple_of_8(width * PAN_FRACTION) if pan in ("left", "right") else 0
        grow_h = _multiple_of_8(height * PAN_FRACTION) if pan in ("up", "down") else 0
        x = grow_w if pan == "left" else 0
        y = grow_h if pan == "up" else 0
        return width + grow_w + (-width % 8), height + grow_h + (-height % 8), x, y
    if square:
        side = max(width, height) + (-max(width, height) % 8)
        return side, side, (side - width) // 2, (side - height) // 2
    if not 1.0 <= zoom <= 2.0 or not math.isfinite(zoom):
        raise InvalidParamsError(f"Zoom out goes from 1 to 2, not {zoom:g}.")
    wide, tall = width * zoom, height * zoom
    if aspect is not None:
        ratio = aspect[0] / aspect[1]
        if not 0.25 <= ratio <= 4:
            raise InvalidParamsError("The aspect ratio must be between 1:4 and 4:1.")
        wide, tall = max(wide, tall * ratio), max(tall, wide / ratio)
    canvas_w, canvas_h = _multiple_of_8(wide + 7), _multiple_of_8(tall + 7)
    return canvas_w, canvas_h, (canvas_w - width) // 2, (canvas_h - height) // 2


def outpaint(
    image: Image.Image,
    *,
    max_pixels: int,
    zoom: float = 1.0,
    pan: str | None = None,
    square: bool = False,
    aspect: tuple[float, float] | None = None,
) -> Outpaint:
    """The canvas and mask for Zoom Out (`zoom`), Pan (`pan`) or Make Square. A canvas over `max_pixels` is made
    from the picture shrunk to fit (Lanczos): then its pixels are the shrunk picture's."""
    picture = image.convert("RGB")
    canvas_w, canvas_h, x, y = plan_canvas(
        picture.width, picture.height, zoom=zoom, pan=pan, square=square, aspect=aspect
    )
    if canvas_w * canvas_h > max_pixels:
        shrink = math.sqrt(max_pixels / (canvas_w * canvas_h))
        picture = picture.resize(
            (max(8, int(picture.width * shrink)), max(8, int(picture.height * shrink))), Image.Resampling.LANCZOS
        )
        canvas_w, canvas_h, x, y = plan_canvas(
            picture.width, picture.height, zoom=zoom, pan=pan, square=square, aspect=aspect
        )
        while canvas_w * canvas_h > max_pixels:  # multiples of 8 rounded up: one more step down
            picture = picture.resize((picture.width - 8, max(8, picture.height * (picture.width - 8) // picture.width)))
            canvas_w, canvas_h, x, y = plan_canvas(
                picture.width, picture.height, zoom=zoom, pan=pan, square=square, aspect=aspect
            )
    box = (x, y, x + picture.width, y + picture.height)
    reach = blur_kernel(OUTPAINT_BLUR) // 2  # how far A1111's blur carries the mask
    keep = np.zeros((canvas_h, canvas_w), np.uint8)
    keep[max(0, y - reach) : y + picture.height + reach, max(0, x - reach) : x + picture.width + reach] = 255
    mask = Image.fromarray(255 - keep, "L")  # white: the new area, short of the picture by the blur's reach
    canvas = Image.new("RGB", (canvas_w, canvas_h))
    canvas.paste(picture, (x, y))
    around = np.full((canvas_h, canvas_w), 255, np.uint8)
    around[y : y + picture.height, x : x + picture.width] = 0
    canvas = fill(canvas, Image.fromarray(around, "L"))
    canvas.paste(picture, (x, y))  # the picture's own pixels, exactly
    return Outpaint(_png(canvas), _png(mask), canvas_w, canvas_h, box)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
