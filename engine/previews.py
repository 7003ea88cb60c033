"""Progress previews: the sampler's current denoised estimate (x0) as a small image, made only when asked for.

SD 1.x-style latents (4 channels, 1/8 scale) get A1111's "Approx cheap" linear latent->RGB projection (a 4x3
matrix: free); tiny jobs (image <= 128x128) and other VAEs (e.g. builtin:shapes, 1/4 scale) are decoded by the real
VAE, which is cheap at that size (larger latents are first shrunk to at most 32x32 to keep it so). `render()` runs
on the worker thread (it touches torch); `encode_preview()` is plain Pillow and runs on any thread.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine.denoise import decode

PREVIEW_MAX_SIDE = 256
PREVIEW_QUALITY = 80
TINY_IMAGE_SIDE = 128  # images at or below this (both sides) are decoded by the real VAE
MAX_DECODED_LATENT = 32  # a non-SD VAE decodes at most this many latent pixels on the longer side

# A1111's `sd_vae_approx.cheap_approximation` for SD 1.x: rows are the 4 latent channels, columns R, G, B.
APPROX_CHEAP_SD1 = (
    (0.298, 0.207, 0.208),
    (0.187, 0.286, 0.173),
    (-0.158, 0.189, 0.264),
    (-0.184, -0.271, -0.473),
)


class PreviewSource(Protocol):
    """What a step hands a preview consumer: nothing is computed until `render()` is called."""

    def render(self) -> Image.Image: ...


PreviewFn = Callable[[int, int, PreviewSource], None]
"""`on_preview(step, total, source)` after each step; call `source.render()` (same thread) only if showing it."""


def approx_cheap(latents: torch.Tensor) -> torch.Tensor:
    """A1111's approx-cheap decode: (B, 4, h, w) latents -> (B, h, w, 3) RGB in [0, 1], as `samples_to_images_tensor`
    with approximation 2 followed by `(x + 1) / 2` and a clamp."""
    coefs = torch.tensor(APPROX_CHEAP_SD1, device=latents.device, dtype=torch.float32)
    rgb = torch.einsum("blxy,lr->bxyr", latents.float(), coefs)
    return ((rgb + 1) / 2).clamp(0, 1).cpu()


def uses_approx(latent_channels: int, vae_scale: int, width: int, height: int) -> bool:
    """True where the linear projection applies and is worth it: SD 1.x-shaped latents, image over 128x128."""
    tiny = width <= TINY_IMAGE_SIDE and height <= TINY_IMAGE_SIDE
    return latent_channels == len(APPROX_CHEAP_SD1) and vae_scale == 8 and not tiny


class LatentPreview:
    """A handle on one step's denoised estimate; `render()` turns it into a small RGB image (a grid for a batch)."""

    def __init__(self, denoised: Callable[[], torch.Tensor | None], vae: Any, vae_scale: int) -> None:
        self._denoised = denoised
        self._vae = vae
        self._scale = vae_scale

    def render(self) -> Image.Image:
        latents = self._denoised()
        if latents is None:
            raise ValueError("no denoised estimate yet")
        _, channels, h, w = latents.shape
        if uses_approx(channels, self._scale, w * self._scale, h * self._scale):
            pixels = approx_cheap(latents)
        else:
            longer = max(h, w)
            if longer > MAX_DECODED_LATENT:
                size = (max(1, h * MAX_DECODED_LATENT // longer), max(1, w * MAX_DECODED_LATENT // longer))
                latents = F.interpolate(latents.float(), size=size, mode="area")
            pixels = decode(self._vae, latents)
        return grid(torch.nan_to_num(pixels).mul(255).round().to(torch.uint8).numpy())


def grid(images: np.ndarray) -> Image.Image:
    """(B, H, W, 3) uint8 -> one image, the batch in a near-square grid (rows filled first)."""
    count, height, width, _ = images.shape
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    canvas = np.zeros((rows * height, cols * width, 3), dtype=np.uint8)
    for i in range(count):
        r, c = divmod(i, cols)
        canvas[r * height : (r + 1) * height, c * width : (c + 1) * width] = images[i]
    return Image.fromarray(canvas, "RGB")


def encode_preview(image: Image.Image, max_side: int = PREVIEW_MAX_SIDE, quality: int = PREVIEW_QUALITY) -> bytes:
    """A small JPEG: tiny images nearest-upscaled by a whole factor (crisp, visible), large ones shrunk to fit."""
    longer = max(image.size)
    if longer * 2 <= max_side:
        factor = max_side // longer
        image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    elif longer > max_side:
        image = image.resize(
            (max(1, image.width * max_side // longer), max(1, image.height * max_side // longer)),
            Image.Resampling.BILINEAR,
        )
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()
