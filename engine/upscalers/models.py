"""Upscaler networks on a device, cached like checkpoints (the most recently used few stay loaded), and the hires
pass's image path as A1111 runs it: decoded pixels to 8-bit by truncation, the upscaler, back to float / 255.

Runs on the worker thread that owns the device.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.errors import GenerationFailedError, short_reason
from engine.upscalers.arch import load_network
from engine.upscalers.files import Architecture, UpscalerFile, UpscalerLibrary
from engine.upscalers.run import OVERLAP, PLAIN, TILE, ModelUpscaler, plain_step, resize_to, upscale

log = logging.getLogger(__name__)

MIN_TILE = 32
# A1111 loads Real-ESRGAN's own files (and DAT) with prefer_half; the ESRGAN folder's files (4x-UltraSharp...) in
# float32 (modules/realesrgan_model.py, esrgan_model.py). Easel does the same on a GPU, so the bytes match.
_HALF_PREFIXES = ("realesrgan_", "realesr-", "dat_")


@dataclass
class _Loaded:
    network: torch.nn.Module
    architecture: Architecture
    dtype: torch.dtype
    mtime: float


class UpscalerModels:
    """The upscaler folder's networks for one device."""

    def __init__(self, library: UpscalerLibrary, device: str, *, max_loaded: int = 2) -> None:
        self.library = library
        self.device = torch.device(device)
        self.max_loaded = max_loaded
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()
        self.tile = TILE

    def network(self, file: UpscalerFile) -> _Loaded:
        path = file.path
        mtime = path.stat().st_mtime
        cached = self._loaded.get(file.name)
        if cached is not None and cached.mtime == mtime:
            self._loaded.move_to_end(file.name)
            return cached
        started = time.perf_counter()
        try:
            network, architecture = load_network(path)
        except (OSError, ValueError, RuntimeError) as err:
            raise GenerationFailedError(f"Upscaler {file.name!r} could not be loaded: {short_reason(err)}") from err
        dtype = torch.float16 if self._half(path) else torch.float32
        network = network.to(self.device, dtype)
        self._loaded[file.name] = _Loaded(network, architecture, dtype, mtime)
        while len(self._loaded) > self.max_loaded:
            self._loaded.popitem(last=False)
        log.info("loaded upscaler %s (%s x%d) in %.1f s", file.name, architecture.name, architecture.scale,
                 time.perf_counter() - started)  # fmt: skip
        return self._loaded[file.name]

    def _half(self, path: Path) -> bool:
        return self.device.type == "cuda" and path.name.lower().startswith(_HALF_PREFIXES)

    def upscaler(
        self,
        name: str,
        *,
        on_tile: Callable[[int, int], None] | None = None,
        is_cancelled: Callable[[], bool] | None = None,
    ) -> ModelUpscaler:
        loaded = self.network(self.library.resolve(name))
        return ModelUpscaler(
            loaded.network, self.device, loaded.dtype, self.tile, OVERLAP, on_tile=on_tile, is_cancelled=is_cancelled
        )

    def loaded_names(self) -> list[str]:
        return list(self._loaded)


def with_smaller_tiles(run: Callable[[ModelUpscaler], Image.Image], model: ModelUpscaler) -> Image.Image:
    """Run, and where a tile does not fit in the device's memory, again with tiles half the size (down to 32): the
    result then differs from A1111's at the seams, but the job is not lost."""
    while True:
        try:
            return run(model)
        except torch.cuda.OutOfMemoryError:
            if model.tile // 2 < MIN_TILE:
                raise
            torch.cuda.empty_cache()
            log.warning("upscaler tile of %d px ran out of memory; trying %d", model.tile, model.tile // 2)
            model.tile //= 2


def hires_images(
    pixels: torch.Tensor, width: int, height: int, upscaler: str, models: UpscalerModels | None,
    is_cancelled: Callable[[], bool] | None = None,
) -> torch.Tensor:  # fmt: skip
    """A1111's sample_hr_pass image path: decoded images (B, H, W, 3) in [0, 1] -> (B, 3, height, width) in [0, 1],
    each through 8-bit (truncated, as A1111's `astype(np.uint8)`) and `resize_image` with the named upscaler."""
    eight_bit = (pixels.float().cpu().numpy() * 255.0).astype(np.uint8)
    out = []
    for array in eight_bit:
        image = Image.fromarray(array)
        if upscaler in PLAIN:
            image = resize_to(image, width, height, upscaler)
        else:
            assert models is not None
            model = models.upscaler(upscaler, is_cancelled=is_cancelled)
            image = with_smaller_tiles(partial(_resized, image, width, height, upscaler), model)
        out.append(np.asarray(image).astype(np.float32) / 255.0)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)


def _resized(image: Image.Image, width: int, height: int, upscaler: str, model: ModelUpscaler) -> Image.Image:
    return resize_to(image, width, height, upscaler, model)


def extras_upscale(
    image: Image.Image, scale: float, upscaler: str, models: UpscalerModels | None,
    on_tile: Callable[[int, int], None] | None = None, is_cancelled: Callable[[], bool] | None = None,
) -> Image.Image:  # fmt: skip
    """Extras' upscale: `Upscaler.upscale(image, scale)` (each side cut down to a multiple of 8)."""

    if upscaler in PLAIN:
        return upscale(image, scale, plain_step(upscaler, scale))
    assert models is not None
    model = models.upscaler(upscaler, on_tile=on_tile, is_cancelled=is_cancelled)
    return with_smaller_tiles(lambda m: upscale(image, scale, m.upscale_once), model)
