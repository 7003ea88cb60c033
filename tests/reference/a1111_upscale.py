"""SOURCE: AUTOMATIC1111 stable-diffusion-webui v1.10.1 behaviour for image upscaling: modules/upscaler.py
(Upscaler.upscale, UpscalerLanczos, UpscalerNearest, UpscalerNone), modules/upscaler_utils.py
(pil_image_to_torch_bgr, torch_bgr_to_pil_image, upscale_pil_patch, upscale_with_model), modules/images.py
(split_grid, combine_grid, resize_image with resize_mode 0), modules/processing.py sample_hr_pass (the decoded
image to 8-bit by truncation, resized, back to float / 255) and scripts/postprocessing_upscale.py (Scale by / to).

Test-only reference, written for Easel from those files' logic in PIL terms (crop, paste through L masks), so that
Easel's numpy version (`engine.upscalers.run`) is checked against PIL's own arithmetic. One deliberate change: every
resize goes width first (`_resize`), which is what Pillow 9.5, A1111's pinned version, does; Pillow 13 sometimes
starts with the height and then differs by a few levels.
Upstream style is kept on purpose so it can be read side by side with A1111.
"""

# ruff: noqa
# mypy: ignore-errors

import math
from collections import namedtuple

import numpy as np
import torch
from PIL import Image

LANCZOS = Image.Resampling.LANCZOS
NEAREST = Image.Resampling.NEAREST

Grid = namedtuple("Grid", ["tiles", "tile_w", "tile_h", "image_w", "image_h", "overlap"])


def _resize(im, size, resample=LANCZOS):
    w, h = size
    if im.width != w:
        im = im.resize((w, im.height), resample=resample)
    if im.height != h:
        im = im.resize((w, h), resample=resample)
    return im


def split_grid(image, tile_w=512, tile_h=512, overlap=64):
    w, h = image.size
    non_overlap_width = tile_w - overlap
    non_overlap_height = tile_h - overlap
    cols = math.ceil((w - overlap) / non_overlap_width)
    rows = math.ceil((h - overlap) / non_overlap_height)
    dx = (w - tile_w) / (cols - 1) if cols > 1 else 0
    dy = (h - tile_h) / (rows - 1) if rows > 1 else 0
    grid = Grid([], tile_w, tile_h, w, h, overlap)
    for row in range(rows):
        row_images = []
        y = int(row * dy)
        if y + tile_h >= h:
            y = h - tile_h
        for col in range(cols):
            x = int(col * dx)
            if x + tile_w >= w:
                x = w - tile_w
            tile = image.crop((x, y, x + tile_w, y + tile_h))
            row_images.append([x, tile_w, tile])
        grid.tiles.append([y, tile_h, row_images])
    return grid


def combine_grid(grid):
    def make_mask_image(r):
        r = r * 255 / grid.overlap
        r = r.astype(np.uint8)
        return Image.fromarray(r, "L")

    mask_w = make_mask_image(
        np.arange(grid.overlap, dtype=np.float32).reshape((1, grid.overlap)).repeat(grid.tile_h, axis=0)
    )
    mask_h = make_mask_image(
        np.arange(grid.overlap, dtype=np.float32).reshape((grid.overlap, 1)).repeat(grid.image_w, axis=1)
    )
    combined_image = Image.new("RGB", (grid.image_w, grid.image_h))
    for y, h, row in grid.tiles:
        combined_row = Image.new("RGB", (grid.image_w, h))
        for x, w, tile in row:
            if x == 0:
                combined_row.paste(tile, (0, 0))
                continue
            combined_row.paste(tile.crop((0, 0, grid.overlap, h)), (x, 0), mask=mask_w)
            combined_row.paste(tile.crop((grid.overlap, 0, w, h)), (x + grid.overlap, 0))
        if y == 0:
            combined_image.paste(combined_row, (0, 0))
            continue
        combined_image.paste(combined_row.crop((0, 0, combined_row.width, grid.overlap)), (0, y), mask=mask_h)
        combined_image.paste(combined_row.crop((0, grid.overlap, combined_row.width, h)), (0, y + grid.overlap))
    return combined_image


def pil_image_to_torch_bgr(img):
    img = np.array(img.convert("RGB"))
    img = img[:, :, ::-1]
    img = np.transpose(img, (2, 0, 1))
    img = np.ascontiguousarray(img) / 255
    return torch.from_numpy(img)


def torch_bgr_to_pil_image(tensor):
    if tensor.ndim == 4:
        tensor = tensor.squeeze(0)
    arr = tensor.float().cpu().clamp_(0, 1).numpy()
    arr = 255.0 * np.moveaxis(arr, 0, 2)
    arr = arr.round().astype(np.uint8)
    arr = arr[:, :, ::-1]
    return Image.fromarray(arr, "RGB")


def upscale_pil_patch(model, img):
    param = next(model.parameters())
    with torch.inference_mode():
        tensor = pil_image_to_torch_bgr(img).unsqueeze(0)
        tensor = tensor.to(device=param.device, dtype=param.dtype)
        return torch_bgr_to_pil_image(model(tensor))


def upscale_with_model(model, img, *, tile_size, tile_overlap=0):
    if tile_size <= 0:
        return upscale_pil_patch(model, img)
    grid = split_grid(img, tile_size, tile_size, tile_overlap)
    newtiles = []
    for y, h, row in grid.tiles:
        newrow = []
        for x, w, tile in row:
            output = upscale_pil_patch(model, tile)
            scale_factor = output.width // tile.width
            newrow.append([x * scale_factor, w * scale_factor, output])
        newtiles.append([y * scale_factor, h * scale_factor, newrow])
    newgrid = Grid(
        newtiles,
        tile_w=grid.tile_w * scale_factor,
        tile_h=grid.tile_h * scale_factor,
        image_w=grid.image_w * scale_factor,
        image_h=grid.image_h * scale_factor,
        overlap=grid.overlap * scale_factor,
    )
    return combine_grid(newgrid)


class Upscaler:
    """Upscaler.upscale with do_upscale given: a model (ESRGAN/R-ESRGAN: upscale_with_model at ESRGAN_tile 192,
    ESRGAN_tile_overlap 8), or the plain Lanczos / Nearest / None upscalers."""

    def __init__(self, name, model=None, tile=192, overlap=8):
        self.name, self.model, self.tile, self.overlap = name, model, tile, overlap
        self.scale = 1

    def do_upscale(self, img):
        if self.model is not None:
            return upscale_with_model(self.model, img, tile_size=self.tile, tile_overlap=self.overlap)
        if self.name == "Lanczos":
            return _resize(img, (int(img.width * self.scale), int(img.height * self.scale)), LANCZOS)
        if self.name == "Nearest":
            return _resize(img, (int(img.width * self.scale), int(img.height * self.scale)), NEAREST)
        return img

    def upscale(self, img, scale):
        self.scale = scale
        dest_w = int((img.width * scale) // 8 * 8)
        dest_h = int((img.height * scale) // 8 * 8)
        for i in range(3):
            if img.width >= dest_w and img.height >= dest_h and (i > 0 or scale != 1):
                break
            shape = (img.width, img.height)
            img = self.do_upscale(img)
            if shape == (img.width, img.height):
                break
        if img.width != dest_w or img.height != dest_h:
            img = _resize(img, (int(dest_w), int(dest_h)), LANCZOS)
        return img


def resize_image(im, width, height, upscaler):
    """images.resize_image(0, im, width, height, upscaler_name): `upscaler` is an `Upscaler`."""

    def resize(im, w, h):
        if upscaler.name == "None" or im.mode == "L":
            return _resize(im, (w, h), LANCZOS)
        scale = max(w / im.width, h / im.height)
        if scale > 1.0:
            im = upscaler.upscale(im, scale)
        if im.width != w or im.height != h:
            im = _resize(im, (w, h), LANCZOS)
        return im

    return resize(im, width, height)


def hires_pixels(decoded, width, height, upscaler):
    """sample_hr_pass's image path: decoded VAE output in [-1, 1] (NCHW) to the float [0, 1] batch the VAE encodes."""
    batch_images = []
    for x in decoded:
        x_sample = torch.clamp((x + 1.0) / 2.0, min=0.0, max=1.0)
        x_sample = 255.0 * np.moveaxis(x_sample.cpu().numpy(), 0, 2)
        x_sample = x_sample.astype(np.uint8)
        image = Image.fromarray(x_sample)
        image = resize_image(image, width, height, upscaler)
        image = np.array(image).astype(np.float32) / 255.0
        image = np.moveaxis(image, 2, 0)
        batch_images.append(image)
    return torch.from_numpy(np.array(batch_images))


def extras_scale_by(image, upscaler, upscale_by):
    """Extras' "Scale by": Upscaler.upscale directly (the size cut to a multiple of 8)."""
    return upscaler.upscale(image, upscale_by)


def extras_scale_to(image, upscaler, target_w, target_h, crop):
    """Extras' "Scale to": the larger ratio, then with crop a centred paste on a black canvas of the target size."""
    upscale_by = max(target_w / image.width, target_h / image.height)
    image = upscaler.upscale(image, upscale_by)
    if crop:
        cropped = Image.new("RGB", (target_w, target_h))
        cropped.paste(image, box=(target_w // 2 - image.width // 2, target_h // 2 - image.height // 2))
        image = cropped
    return image
