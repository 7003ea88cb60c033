"""A1111 v1.10.1's upscale path, to the byte: `Upscaler.upscale` (the model up to three times, then Lanczos to the
size cut to a multiple of 8), `upscale_with_model` (192-pixel tiles overlapping by 8, BGR in [0, 1], each tile
rounded to 8-bit and blended back with A1111's ramp), `resize_image` (the hires pass), and the plain resamplers.

Pillow 9.5 (A1111's pin) resizes the horizontal axis first; newer Pillow sometimes starts with the vertical one,
so every resize here is two single-axis resizes, width first (measured to give Pillow 9.5's bytes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from engine.errors import Cancelled

TILE = 192  # A1111's ESRGAN_tile
OVERLAP = 8  # ESRGAN_tile_overlap
PLAIN = ("None", "Lanczos", "Nearest")
Network = Callable[[torch.Tensor], torch.Tensor]
TileProgress = Callable[[int, int], None]  # (tiles done, tiles in this model run)


def resize(
    image: Image.Image, width: int, height: int, resample: Image.Resampling = Image.Resampling.LANCZOS
) -> Image.Image:
    """`image.resize((width, height), resample)` as Pillow 9.5 computes it."""
    if image.size == (width, height):
        return image.copy()
    if image.width != width:
        image = image.resize((width, image.height), resample)
    if image.height != height:
        image = image.resize((width, height), resample)
    return image


@dataclass
class ModelUpscaler:
    """One upscaler network and how A1111 runs it: tiles of `tile` pixels (0: the whole image at once)."""

    network: Network
    device: torch.device
    dtype: torch.dtype = torch.float32
    tile: int = TILE
    overlap: int = OVERLAP
    on_tile: TileProgress | None = None
    is_cancelled: Callable[[], bool] | None = None

    def patch(self, pixels: np.ndarray) -> np.ndarray:
        """One RGB uint8 patch through the network: A1111's pil_image_to_torch_bgr and torch_bgr_to_pil_image."""
        bgr = np.ascontiguousarray(np.transpose(pixels[:, :, ::-1], (2, 0, 1))) / 255  # float64, as A1111's numpy
        tensor = torch.from_numpy(bgr).unsqueeze(0).to(device=self.device, dtype=self.dtype)
        with torch.inference_mode():
            arr = self.network(tensor).squeeze(0).float().cpu().clamp_(0, 1).numpy()
        arr = (255.0 * np.moveaxis(arr, 0, 2)).round().astype(np.uint8)
        return np.ascontiguousarray(arr[:, :, ::-1])

    def upscale_once(self, image: Image.Image) -> Image.Image:
        """A1111's `upscale_with_model`: the image once through the network, tiled."""
        pixels = np.asarray(image.convert("RGB"))
        if self.tile <= 0:
            return Image.fromarray(self.patch(pixels), "RGB")
        return Image.fromarray(self._tiled(pixels), "RGB")

    def _tiled(self, pixels: np.ndarray) -> np.ndarray:
        height, width = pixels.shape[:2]
        tile, overlap = self.tile, self.overlap
        xs, ys = _tile_starts(width, tile, overlap), _tile_starts(height, tile, overlap)
        total, done = len(xs) * len(ys), 0
        rows: list[tuple[int, list[tuple[int, np.ndarray]]]] = []
        scale = 0
        for y in ys:
            row = []
            for x in xs:
                if self.is_cancelled is not None and self.is_cancelled():
                    raise Cancelled()
                out = self.patch(_crop(pixels, x, y, tile, tile))
                scale = out.shape[1] // tile
                row.append((x, out))
                done += 1
                if self.on_tile is not None:
                    self.on_tile(done, total)
            rows.append((y, row))
        return _combine(rows, width * scale, height * scale, tile * scale, overlap * scale, scale)


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """split_grid's tile positions along one side: evenly spread, the last one flush with the border (negative
    when the image is smaller than a tile: the tile is then padded with black before the border)."""
    count = math.ceil((size - overlap) / (tile - overlap))
    step = (size - tile) / (count - 1) if count > 1 else 0
    starts = []
    for i in range(count):
        start = int(i * step)
        starts.append(size - tile if start + tile >= size else start)
    return starts


def _crop(pixels: np.ndarray, x: int, y: int, width: int, height: int) -> np.ndarray:
    """PIL's crop: outside the image is black."""
    out = np.zeros((height, width, 3), np.uint8)
    src_h, src_w = pixels.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + width, src_w), min(y + height, src_h)
    if x1 > x0 and y1 > y0:
        out[y0 - y : y1 - y, x0 - x : x1 - x] = pixels[y0:y1, x0:x1]
    return out


def _ramp(overlap: int) -> np.ndarray:
    """combine_grid's blend weights: uint8(arange(overlap) * 255 / overlap), in float32 as A1111 computes them."""
    return (np.arange(overlap, dtype=np.float32) * 255 / overlap).astype(np.uint8).astype(np.int32)


def _blend(under: np.ndarray, over: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """PIL's paste through an L mask: (under * (255 - w) + over * w) / 255, with Pillow's rounding division."""
    value = under.astype(np.int32) * (255 - weight) + over.astype(np.int32) * weight + 128
    blended: np.ndarray = (((value >> 8) + value) >> 8).astype(np.uint8)
    return blended


def _paste(canvas: np.ndarray, piece: np.ndarray, x: int, y: int, weight: np.ndarray | None = None) -> None:
    """Paste `piece` at (x, y), clipped to the canvas; through `weight` (broadcast over the piece) when given."""
    height, width = canvas.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + piece.shape[1], width), min(y + piece.shape[0], height)
    if x1 <= x0 or y1 <= y0:
        return
    part = piece[y0 - y : y1 - y, x0 - x : x1 - x]
    if weight is None:
        canvas[y0:y1, x0:x1] = part
        return
    w = np.broadcast_to(weight, piece.shape[:2])[y0 - y : y1 - y, x0 - x : x1 - x, None]
    canvas[y0:y1, x0:x1] = _blend(canvas[y0:y1, x0:x1], part, w)


def _combine(
    rows: list[tuple[int, list[tuple[int, np.ndarray]]]], width: int, height: int, tile: int, overlap: int, scale: int
) -> np.ndarray:
    """combine_grid: each row's tiles left to right, the first `overlap` columns of every tile but a row's first
    ramped over the one before; then the rows top to bottom, ramped the same way."""
    ramp = _ramp(overlap) if overlap else np.zeros(0, np.int32)
    image = np.zeros((height, width, 3), np.uint8)
    for row_y, row in rows:
        y = row_y * scale
        line = np.zeros((tile, width, 3), np.uint8)
        for tile_x, piece in row:
            x = tile_x * scale
            if x == 0:
                _paste(line, piece, 0, 0)
                continue
            _paste(line, piece[:, :overlap], x, 0, ramp[None, :])
            _paste(line, piece[:, overlap:], x + overlap, 0)
        if y == 0:
            _paste(image, line, 0, 0)
            continue
        _paste(image, line[:overlap], 0, y, ramp[:, None])
        _paste(image, line[overlap:], 0, y + overlap)
    return image


def upscale(image: Image.Image, scale: float, step: Callable[[Image.Image], Image.Image] | None) -> Image.Image:
    """A1111's `Upscaler.upscale`: `step` (one model run; None for the `None` upscaler) at most three times until the
    image reaches the size, which is cut down to a multiple of 8; then Lanczos to exactly that size."""
    dest_w, dest_h = int((image.width * scale) // 8 * 8), int((image.height * scale) // 8 * 8)
    for i in range(3):
        if image.width >= dest_w and image.height >= dest_h and (i > 0 or scale != 1):
            break
        if step is None:
            break
        size = image.size
        image = step(image)
        if image.size == size:
            break
    if image.size != (dest_w, dest_h):
        image = resize(image, dest_w, dest_h)
    return image


def plain_step(name: str, scale: float) -> Callable[[Image.Image], Image.Image] | None:
    """The do_upscale of A1111's plain upscalers: Lanczos and Nearest resample by the scale; None does nothing."""
    if name == "None":
        return None
    resample = Image.Resampling.NEAREST if name == "Nearest" else Image.Resampling.LANCZOS

    def step(image: Image.Image) -> Image.Image:
        return resize(image, int(image.width * scale), int(image.height * scale), resample)

    return step


def resize_to(
    image: Image.Image, width: int, height: int, upscaler: str, model: ModelUpscaler | None = None
) -> Image.Image:
    """A1111's `images.resize_image(0, ...)` (the hires pass's): the named upscaler when the image grows, then
    Lanczos to exactly `width` x `height`. `None` is a Lanczos resize alone."""
    if upscaler == "None":
        return resize(image, width, height)
    scale = max(width / image.width, height / image.height)
    if scale > 1.0:
        step = model.upscale_once if model is not None else plain_step(upscaler, scale)
        image = upscale(image, scale, step)
    if image.size != (width, height):
        image = resize(image, width, height)
    return image
