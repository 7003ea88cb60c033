"""A1111 v1.10.1's inpainting around the sampler (`StableDiffusionProcessingImg2Img.init`, `modules/masking.py`,
`apply_overlay`): the mask read, inverted and blurred (8-bit cv2 passes, A1111's kernel size), "only masked"
cropping with padding and its expansion to the processing aspect, the masked content (fill, original, latent noise,
latent nothing), the latent mask as A1111 rounds it, and the original pixels put back outside the mask.

Pure image code (numpy, PIL, cv2): the pipeline encodes `Prepared.image`, blends with `latent_mask` after every
step and at the end, and calls `finish` on each decoded image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageFilter, ImageOps

from engine.params import GenerationParams

FILL, ORIGINAL, LATENT_NOISE, LATENT_NOTHING = 0, 1, 2, 3
MASKED_CONTENT = {"fill": FILL, "original": ORIGINAL, "latent noise": LATENT_NOISE, "latent nothing": LATENT_NOTHING}
_FILL_LAYERS = ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1))  # masking.fill's blur radii and repeats


@dataclass(frozen=True)
class MaskOptions:
    """A1111's inpainting settings (the UI's defaults: blur 4, inpaint masked, original, whole picture, 32)."""

    blur: int = 4
    invert: bool = False
    content: int = ORIGINAL
    only_masked: bool = False
    padding: int = 32


@dataclass
class Prepared:
    """One init image made ready: what to encode, the latent mask (1 = repaint), and how to put the result back."""

    image: Image.Image  # RGB at the processing size: cropped, resized and filled as A1111 does
    mask: Image.Image  # the processed mask (L or RGB), whose downscale is the latent mask
    overlay: Image.Image | None  # RGBA: the original outside the mask, pasted over the result
    paste_to: tuple[int, int, int, int] | None  # only masked: (x, y, w, h) of the crop in the original
    blank: bool = False  # only masked with an empty mask: A1111 runs plain img2img

    def latent_mask(self, width: int, height: int) -> np.ndarray:
        """The mask at latent size: PIL's default (bicubic) resize of its RGB form, / 255, rounded (mask_round)."""
        small = self.mask.convert("RGB").resize((width, height))
        values = np.asarray(small, dtype=np.float32)[:, :, 0] / 255
        rounded: np.ndarray = np.around(values)
        return rounded


def mask_options(params: GenerationParams) -> MaskOptions:
    return MaskOptions(
        blur=params.mask_blur,
        invert=params.inpainting_mask_invert,
        content=MASKED_CONTENT[params.inpainting_fill],
        only_masked=params.inpaint_full_res,
        padding=params.inpaint_full_res_padding,
    )


def binary_mask(mask: Image.Image) -> Image.Image:
    """create_binary_mask: an RGBA mask that is not fully opaque gives its alpha, thresholded at > 128 (painted =
    repaint); any other mask its luminance (white = repaint)."""
    if mask.mode == "RGBA" and mask.getextrema()[-1] != (255, 255):
        alpha = np.asarray(mask.getchannel("A"))
        return Image.fromarray(np.where(alpha > 128, 255, 0).astype(np.uint8), "L")
    return mask.convert("L")


def blur_kernel(sigma: int) -> int:
    return 2 * int(2.5 * sigma + 0.5) + 1


def blurred(mask: Image.Image, sigma: int) -> Image.Image:
    """A1111's mask blur: two 8-bit cv2 Gaussian passes, across then down (a float blur differs by a level or two)."""
    if sigma <= 0:
        return mask
    pixels = np.asarray(mask)
    pixels = cv2.GaussianBlur(pixels, (blur_kernel(sigma), 1), sigma)
    pixels = cv2.GaussianBlur(pixels, (1, blur_kernel(sigma)), sigma)
    return Image.fromarray(pixels)


def crop_region(mask: Image.Image, padding: int) -> tuple[int, int, int, int] | None:
    """get_crop_region_v2: the box around the mask's non-zero pixels, grown by `padding` within the image."""
    box = mask.getbbox()
    if not box:
        return None
    x1, y1, x2, y2 = box
    if not padding:
        return box
    return max(x1 - padding, 0), max(y1 - padding, 0), min(x2 + padding, mask.width), min(y2 + padding, mask.height)


def _grow(low: int, high: int, wanted: float, limit: int) -> tuple[int, int]:
    """One side of expand_crop_region: grown by the whole pixels missing, centred, shifted back inside."""
    diff = int(wanted - (high - low))
    low -= diff // 2
    high += diff - diff // 2
    if high >= limit:
        low, high = low - (high - limit), limit
    if low < 0:
        low, high = 0, high - low
    return low, min(high, limit)


def expand_region(
    region: tuple[int, int, int, int], width: int, height: int, image_w: int, image_h: int
) -> tuple[int, int, int, int]:
    """expand_crop_region: the short side grown to the processing aspect `width / height`."""
    x1, y1, x2, y2 = region
    aspect = width / height
    if (x2 - x1) / (y2 - y1) > aspect:
        y1, y2 = _grow(y1, y2, (x2 - x1) / aspect, image_h)
    else:
        x1, x2 = _grow(x1, x2, (y2 - y1) * aspect, image_w)
    return x1, y1, x2, y2


def _paste_centred(canvas: Image.Image, resized: Image.Image) -> None:
    canvas.paste(resized, box=(canvas.width // 2 - resized.width // 2, canvas.height // 2 - resized.height // 2))


def resize_fill(image: Image.Image, width: int, height: int) -> Image.Image:
    """resize_image mode 2 ("resize and fill"): fit inside, then stretch the edge rows or columns into the gaps. The
    result is RGB, whatever the input (A1111's canvas)."""
    ratio, src_ratio = width / height, image.width / image.height
    src_w = width if ratio < src_ratio else image.width * height // image.height
    src_h = height if ratio >= src_ratio else image.height * width // image.width
    resized = image.resize((src_w, src_h), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (width, height))
    _paste_centred(canvas, resized)
    if ratio < src_ratio:
        gap = height // 2 - src_h // 2
        if gap > 0:
            canvas.paste(resized.resize((width, gap), box=(0, 0, width, 0)), box=(0, 0))
            canvas.paste(
                resized.resize((width, gap), box=(0, resized.height, width, resized.height)), box=(0, gap + src_h)
            )
    elif ratio > src_ratio:
        gap = width // 2 - src_w // 2
        if gap > 0:
            canvas.paste(resized.resize((gap, height), box=(0, 0, 0, height)), box=(0, 0))
            canvas.paste(
                resized.resize((gap, height), box=(resized.width, 0, resized.width, height)), box=(gap + src_w, 0)
            )
    return canvas


def resize_crop(image: Image.Image, width: int, height: int) -> Image.Image:
    """resize_image mode 1 ("crop and resize"): cover the size, centred, the overhang cut."""
    ratio, src_ratio = width / height, image.width / image.height
    src_w = width if ratio > src_ratio else image.width * height // image.height
    src_h = height if ratio <= src_ratio else image.height * width // image.width
    canvas = Image.new("RGB", (width, height))
    _paste_centred(canvas, image.resize((src_w, src_h), Image.Resampling.LANCZOS))
    return canvas


def fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """masking.fill: the masked pixels take the surrounding colours, from the unmasked ones blurred ever less."""
    result = Image.new("RGBA", image.size)
    kept = Image.new("RGBa", image.size)
    kept.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    for radius, repeats in _FILL_LAYERS:
        layer = kept.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            result.alpha_composite(layer)
    return result.convert("RGB")


def flatten(image: Image.Image) -> Image.Image:
    """images.flatten: transparency on white (A1111's img2img background colour)."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, "#ffffff")
        background.paste(rgba, mask=rgba)
        return background.convert("RGB")
    return image.convert("RGB")


def prepare(init: Image.Image, mask: Image.Image, options: MaskOptions, width: int, height: int) -> Prepared:
    """The init image and mask of one inpaint job at the processing size `width` x `height`."""
    processed = binary_mask(mask)
    if options.only_masked and processed.size != init.size:  # A1111 assumes one size; Easel fits the mask first
        processed = processed.resize(init.size, Image.Resampling.LANCZOS)
    if options.invert:
        processed = ImageOps.invert(processed)
    processed = blurred(processed, options.blur)
    region: tuple[int, int, int, int] | None = None
    paste_to = None
    if options.only_masked:
        overlay_mask = processed
        region = crop_region(processed, options.padding)
        if region is None:  # A1111: 'Unable to perform "Inpaint Only mask" because mask is blank'
            image = flatten(init).resize((width, height), Image.Resampling.LANCZOS)
            return Prepared(image, processed, None, None, blank=True)
        region = expand_region(region, width, height, processed.width, processed.height)
        x1, y1, x2, y2 = region
        processed = resize_fill(processed.crop(region), width, height)
        paste_to = (x1, y1, x2 - x1, y2 - y1)
    else:
        processed = processed.resize((width, height), Image.Resampling.LANCZOS)
        doubled = np.clip(np.asarray(processed).astype(np.float32) * 2, 0, 255).astype(np.uint8)
        overlay_mask = Image.fromarray(doubled)
    image = flatten(init)
    if region is None:
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    if overlay_mask.size != image.size:
        overlay_mask = overlay_mask.resize(image.size, Image.Resampling.LANCZOS)
    kept = Image.new("RGBa", image.size)
    kept.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(overlay_mask.convert("L")))
    overlay = kept.convert("RGBA")
    if region is not None:
        image = resize_fill(image.crop(region), width, height)
    if options.content != ORIGINAL:
        image = fill(image, processed)
    return Prepared(image, processed, overlay, paste_to)


def finish(result: Image.Image, prepared: Prepared) -> Image.Image:
    """apply_overlay: an "only masked" result resized into its box on the original's canvas (resize mode 1), then
    the original pixels outside the mask composited over it."""
    if prepared.overlay is None:
        return result
    if prepared.paste_to is not None:
        x, y, w, h = prepared.paste_to
        canvas = Image.new("RGBA", prepared.overlay.size)
        canvas.paste(resize_crop(result, w, h), (x, y))
        result = canvas
    composed = result.convert("RGBA")
    composed.alpha_composite(prepared.overlay)
    return composed.convert("RGB")


def _decoded(data: bytes) -> Image.Image:
    import io

    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        return opened.copy()


def check_mask(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """A mask upload: its header checked before decoding (as an init image's), then decoded and read as A1111 reads
    a mask; InvalidParamsError when it paints nothing. White (or, in a PNG with transparency, painted) = repaint."""
    from engine.errors import InvalidParamsError
    from engine.images import check_upload

    try:
        check_upload(data, max_bytes=max_bytes, max_pixels=max_pixels)
    except InvalidParamsError as err:
        raise InvalidParamsError(f"The mask: {err}") from None
    mask = _decoded(data)
    if binary_mask(mask).getbbox() is None:
        raise InvalidParamsError(
            "The mask is empty: paint white (or opaque) where the image should be redrawn, black elsewhere."
        )
    return mask


def transparency_mask(data: bytes) -> bytes | None:
    """An init image with transparency: its transparent area as a mask PNG (transparent = repaint, as an erased
    photo means it), or None when the image is opaque throughout."""
    import io

    image = _decoded(data)
    if image.mode not in ("RGBA", "LA") and not (image.mode == "P" and "transparency" in image.info):
        return None
    alpha = np.asarray(image.convert("RGBA").getchannel("A"))
    if alpha.min() == 255:
        return None
    out = io.BytesIO()
    Image.fromarray(np.where(alpha < 255, 255, 0).astype(np.uint8), "L").save(out, format="PNG")
    return out.getvalue()


GRID = 3  # Vary (Region)'s cells: 3 x 3, numbered 1-9 left to right, top to bottom
CELL_NAMES = ("top left", "top", "top right", "left", "middle", "right", "bottom left", "bottom", "bottom right")


def _cell_box(cell: int, width: int, height: int) -> tuple[int, int, int, int]:
    row, col = divmod(cell, GRID)
    return col * width // GRID, row * height // GRID, (col + 1) * width // GRID, (row + 1) * height // GRID


def grid_mask(width: int, height: int, cells: list[int]) -> bytes:
    """A mask PNG painting the chosen grid cells (0-based) of a `width` x `height` image white."""
    import io

    pixels = np.zeros((height, width), np.uint8)
    for cell in cells:
        x1, y1, x2, y2 = _cell_box(cell, width, height)
        pixels[y1:y2, x1:x2] = 255
    out = io.BytesIO()
    Image.fromarray(pixels, "L").save(out, format="PNG")
    return out.getvalue()


def grid_preview(image: Image.Image, side: int = 384) -> bytes:
    """The image (scaled to about `side` pixels, crisp) with the grid and its cell numbers drawn on it, as a PNG."""
    import io

    from PIL import ImageDraw

    scale = max(1, side // max(image.size))
    preview = image.convert("RGB").resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(preview)
    for cell in range(GRID * GRID):
        x1, y1, x2, y2 = _cell_box(cell, preview.width, preview.height)
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), outline=(255, 255, 255), width=2)
        label = str(cell + 1)
        cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
        draw.rectangle((cx - 9, cy - 9, cx + 9, cy + 9), fill=(0, 0, 0))
        draw.text((cx - 3, cy - 6), label, fill=(255, 255, 255))
    out = io.BytesIO()
    preview.save(out, format="PNG")
    return out.getvalue()
