"""Inpainting around the sampler, against A1111 v1.10.1's own steps (tests/reference/a1111_inpaint.py): the mask
read, inverted and blurred, "only masked" crops, the masked content, the latent mask, and the overlay."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine.inpaint import FILL, LATENT_NOISE, MASKED_CONTENT, ORIGINAL, MaskOptions, blur_kernel, finish, prepare
from tests.reference import a1111_inpaint as a1111


def _picture(width: int, height: int, seed: int = 0) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    base = np.stack([x * 255 / width, y * 255 / height, (x * y) % 256], axis=-1) + rng.normal(0, 8, (height, width, 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def _mask(width: int, height: int, box: tuple[int, int, int, int], mode: str = "L") -> Image.Image:
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).ellipse(box, fill=255)
    if mode == "RGBA":  # painted = repaint, as A1111's sketch gives it
        rgba = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        rgba.putalpha(mask)
        return rgba
    return mask


# name -> (options, image size, the ellipse painted, the processing size)
CASES = {
    "whole picture, blur 4": (MaskOptions(blur=4), (96, 64), (20, 10, 60, 40), (64, 64)),
    "whole picture, resized, blur 16, fill": (
        MaskOptions(blur=16, content=FILL),
        (120, 90),
        (10, 30, 50, 80),
        (64, 48),
    ),
    "whole picture, inverted, no blur": (MaskOptions(blur=0, invert=True), (64, 64), (8, 8, 40, 30), (64, 64)),
    "only masked, padding 32": (MaskOptions(only_masked=True), (128, 96), (70, 20, 100, 50), (64, 64)),
    "only masked, wide crop, padding 0": (
        MaskOptions(only_masked=True, padding=0),
        (128, 96),
        (10, 40, 120, 56),
        (64, 64),
    ),
    "only masked, fill, tall target": (
        MaskOptions(only_masked=True, padding=8, content=FILL),
        (96, 96),
        (40, 40, 60, 90),
        (48, 80),
    ),
    "only masked, rgba mask": (MaskOptions(only_masked=True, padding=4), (96, 80), (5, 5, 30, 30), (64, 64)),
    "latent noise": (MaskOptions(content=LATENT_NOISE), (64, 64), (0, 0, 63, 20), (64, 64)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_prepared_image_masks_and_overlay_are_a1111s(name: str) -> None:
    options, size, box, (width, height) = CASES[name]
    init = _picture(*size)
    mask = _mask(*size, box, "RGBA" if "rgba" in name else "L")
    ours = prepare(init, mask, options, width, height)
    theirs = a1111.Img2Img(
        init, mask, width, height, mask_blur=options.blur, inpainting_mask_invert=int(options.invert),
        inpainting_fill=options.content, inpaint_full_res=options.only_masked,
        inpaint_full_res_padding=options.padding,
    ).init()  # fmt: skip
    assert ours.paste_to == theirs.paste_to
    assert np.array_equal(np.asarray(ours.image), np.asarray(theirs.image))
    assert ours.overlay is not None
    assert np.array_equal(np.asarray(ours.overlay), np.asarray(theirs.overlay_images[0]))
    assert np.array_equal(ours.latent_mask(width // 8, height // 8), theirs.latent_mask(width // 8, height // 8))
    result = _picture(width, height, seed=9)
    expected = a1111.apply_overlay(result, theirs.paste_to, theirs.overlay_images[0])
    assert np.array_equal(np.asarray(finish(result, ours)), np.asarray(expected))


def test_pixels_outside_the_blurred_mask_come_back_exactly() -> None:
    init, mask = _picture(96, 64), _mask(96, 64, (30, 20, 50, 40))
    for options in (MaskOptions(), MaskOptions(only_masked=True)):
        prepared = prepare(init, mask, options, 96, 64)
        drawn = finish(_picture(96, 64, seed=5), prepared)
        untouched = np.asarray(prepare(init, mask, MaskOptions(blur=4), 96, 64).mask) == 0  # outside the blur
        assert untouched.sum() > 3000
        assert np.array_equal(np.asarray(drawn)[untouched], np.asarray(init)[untouched])


def test_the_blur_kernel_is_a1111s() -> None:
    assert [blur_kernel(s) for s in (1, 4, 16, 64)] == [7, 21, 81, 321]


def test_an_empty_mask_in_only_masked_mode_is_plain_img2img() -> None:
    prepared = prepare(_picture(64, 64), Image.new("L", (64, 64)), MaskOptions(only_masked=True), 64, 64)
    assert prepared.blank and prepared.overlay is None and prepared.paste_to is None


def test_original_is_the_default_masked_content() -> None:
    assert MaskOptions().content == ORIGINAL


# -- on the tiny model, through the engine ---------------------------------------------------------------------


def _png(image: Image.Image) -> bytes:
    import io

    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _inpaint(engine: object, **changes: object) -> list[np.ndarray]:
    from engine.pipeline import DiffusersEngine
    from tests.engine.conftest import tiny_params

    assert isinstance(engine, DiffusersEngine)
    init = engine.blobs.put(_png(_picture(64, 64, seed=2)))
    params = tiny_params(init_image=init, denoising_strength=0.75, steps=6)
    if "mask_image" in changes:
        changes["mask"] = engine.blobs.put(_png(changes.pop("mask_image")))  # type: ignore[arg-type]
    raws = engine.generate(params.replace(**changes))
    return [np.asarray(raw.image) for raw in raws]


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M", "DDIM", "UniPC"])
def test_inpainting_keeps_every_pixel_outside_the_blurred_mask(engine: object, sampler: str) -> None:
    mask = _mask(64, 64, (20, 20, 44, 44))
    [drawn] = _inpaint(engine, mask_image=mask, sampler=sampler)
    outside = np.asarray(prepare(_picture(64, 64, seed=2), mask, MaskOptions(), 64, 64).mask) == 0
    original = np.asarray(_picture(64, 64, seed=2))
    assert np.array_equal(drawn[outside], original[outside])
    assert not np.array_equal(drawn[~outside], original[~outside])


def test_an_all_white_mask_with_original_content_is_img2img(engine: object) -> None:
    [inpainted] = _inpaint(engine, mask_image=Image.new("L", (64, 64), 255))
    [plain] = _inpaint(engine)
    assert np.array_equal(inpainted, plain)


@pytest.mark.parametrize("content", ["fill", "latent noise", "latent nothing"])
def test_every_masked_content_and_only_masked_draw_and_keep_the_outside(engine: object, content: str) -> None:
    mask = _mask(64, 64, (36, 4, 60, 28))
    original = np.asarray(_picture(64, 64, seed=2))
    for only_masked in (False, True):
        [drawn] = _inpaint(engine, mask_image=mask, inpainting_fill=content, inpaint_full_res=only_masked,
                           inpaint_full_res_padding=8)  # fmt: skip
        options = MaskOptions(content=MASKED_CONTENT[content], only_masked=only_masked, padding=8)
        prepared = prepare(_picture(64, 64, seed=2), mask, options, 64, 64)
        assert prepared.overlay is not None
        kept = np.asarray(prepared.overlay)[:, :, 3] == 255
        assert drawn.shape == original.shape and kept.sum() > 2000
        assert np.array_equal(drawn[kept], original[kept])


def test_the_mask_settings_are_written_and_read_back_as_a1111s() -> None:
    from engine.infotext import options_from_infotext, parse_infotext
    from engine.params import Limits, build_params
    from engine.plan import make_plan

    text = (
        "a fox\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Denoising strength: 0.6, "
        "Mask mode: Inpaint not masked, Mask blur: 8, Inpaint area: Only masked, Masked area padding: 16, "
        "Masked content: latent noise, Noise multiplier: 0.9"
    )
    options, notes = options_from_infotext(parse_infotext(text), init_image="a" * 64)
    params = build_params({**options, "mask": "b" * 64}, model="m", limits=Limits())
    assert notes == []
    read = (params.inpainting_mask_invert, params.mask_blur, params.inpaint_full_res, params.inpaint_full_res_padding)
    assert read == (True, 8, True, 16)
    assert (params.inpainting_fill, params.initial_noise_multiplier) == ("latent noise", 0.9)
    fields = dict(make_plan(params).infotext_fields)
    assert list(fields.items()) == [
        ("Denoising strength", "0.6"),
        ("Mask mode", "Inpaint not masked"),
        ("Mask blur", "8"),
        ("Inpaint area", "Only masked"),
        ("Masked area padding", "16"),
        ("Masked content", "latent noise"),
    ]


def test_sdxl_inpaints_by_blending_too(engine: object) -> None:
    from engine.pipeline import DiffusersEngine
    from tests.engine.conftest import tiny_params

    assert isinstance(engine, DiffusersEngine)
    init = engine.blobs.put(_png(_picture(64, 64, seed=2)))
    mask = _mask(64, 64, (20, 20, 44, 44))
    params = tiny_params(model="builtin:tiny-xl", init_image=init, denoising_strength=0.75, steps=4)
    [raw] = engine.generate(params.replace(mask=engine.blobs.put(_png(mask)), inpainting_fill="latent noise"))
    outside = np.asarray(prepare(_picture(64, 64, seed=2), mask, MaskOptions(), 64, 64).mask) == 0
    assert np.array_equal(np.asarray(raw.image)[outside], np.asarray(_picture(64, 64, seed=2))[outside])


def test_a_mask_that_is_no_image_or_paints_nothing_is_refused_with_its_reason() -> None:
    from engine.errors import InvalidParamsError
    from engine.inpaint import check_mask

    with pytest.raises(InvalidParamsError, match="The mask: That file is not a PNG"):
        check_mask(b"not an image", max_bytes=1 << 20, max_pixels=1 << 20)
    with pytest.raises(InvalidParamsError, match="The mask is empty"):
        check_mask(_png(Image.new("L", (8, 8))), max_bytes=1 << 20, max_pixels=1 << 20)
    with pytest.raises(InvalidParamsError, match="pixels"):
        check_mask(_png(Image.new("L", (64, 64), 255)), max_bytes=1 << 20, max_pixels=1000)
