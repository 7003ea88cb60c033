"""Reads back what a shapes picture shows: (foreground colour, background colour, shape).

Pure functions on PIL images, used to score the model and in tests; right on ~100% of ground-truth pictures.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from tools.shapes.data import PALETTE, SHAPES, SUPERSAMPLE, draw_shape

NONE = "none"
FG_DISTANCE = 80.0
_PALETTE_NAMES = list(PALETTE)
_PALETTE_RGB = np.array([PALETTE[n] for n in _PALETTE_NAMES], dtype=np.float32)


def _rgb(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float32)


def nearest_colour(rgb: np.ndarray) -> str:
    """The palette name closest (Euclidean RGB) to one colour."""
    return _PALETTE_NAMES[int(np.argmin(np.linalg.norm(_PALETTE_RGB - rgb, axis=-1)))]


def colour_share(img: Image.Image, colour: str) -> float:
    """Fraction of pixels whose nearest palette colour is `colour`."""
    px = _rgb(img).reshape(-1, 1, 3)
    nearest = np.argmin(np.linalg.norm(px - _PALETTE_RGB[None], axis=-1), axis=1)
    return float(np.mean(nearest == _PALETTE_NAMES.index(colour)))


def _template(shape: str, box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    """Boolean mask of `shape` drawn into the inclusive pixel box, anti-aliased like the data, thresholded."""
    x0, y0, x1, y1 = box
    s = SUPERSAMPLE
    canvas = Image.new("L", (size[0] * s, size[1] * s), 0)
    draw_shape(ImageDraw.Draw(canvas), shape, (x0 * s, y0 * s, (x1 + 1) * s - 1, (y1 + 1) * s - 1), 255)
    small = canvas.resize(size, Image.Resampling.BOX)
    return np.asarray(small) >= 128


def classify(img: Image.Image) -> tuple[str, str, str]:
    """Return (fg colour, bg colour, shape); fg and shape are "none" when nothing stands out."""
    px = _rgb(img)
    border = np.concatenate([px[0], px[-1], px[1:-1, 0], px[1:-1, -1]])
    bg_rgb = np.median(border, axis=0)
    bg = nearest_colour(bg_rgb)
    mask = np.linalg.norm(px - bg_rgb, axis=-1) > FG_DISTANCE
    # Keep the largest blob so stray pixels cannot stretch the box the templates are drawn into.
    labels, count = ndimage.label(mask)
    if count == 0:
        return NONE, bg, NONE
    sizes = ndimage.sum(mask, labels, index=range(1, count + 1))
    mask = labels == (int(np.argmax(sizes)) + 1)
    fg = nearest_colour(np.median(px[mask], axis=0))
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    h, w = mask.shape

    def iou(shape: str) -> float:
        t = _template(shape, box, (w, h))
        return float(np.sum(t & mask) / max(1, np.sum(t | mask)))

    return fg, bg, max(SHAPES, key=iou)


def main() -> None:
    """Self-check on ground-truth pictures from every combination: `python -m tools.shapes.checker`."""
    from tools.shapes.data import all_combinations, make_specs, render

    specs = make_specs(400, seed=123, combos=all_combinations())
    right = [classify(render(s)) == (s.fg, s.bg, s.shape) for s in specs]
    print(f"checker: {sum(right)}/{len(right)} ground-truth pictures read back exactly")


if __name__ == "__main__":
    main()
