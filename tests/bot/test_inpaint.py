"""/imagine with a mask (inpainting), through discord.py against the stand-in."""

from __future__ import annotations

import hashlib
import io

from PIL import Image, ImageDraw

from tests.bot.harness import Harness
from tests.bot.helpers import assert_ephemeral, imagine
from tests.bot.test_img2img import assert_withdrawn
from tests.fakes import FakeExecutor, tiny_png


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _mask(painted: bool = True) -> bytes:
    mask = Image.new("L", (64, 64))
    if painted:
        ImageDraw.Draw(mask).ellipse((16, 16, 48, 48), fill=255)
    return _png(mask)


async def test_a_mask_with_the_init_image_is_stored_and_queued_with_the_job(
    harness: Harness, executor: FakeExecutor
) -> None:
    init = harness.standin.attachment("cat.png", tiny_png(64, 64, seed=5), width=64, height=64)
    data = _mask()
    mask = harness.standin.attachment("mask.png", data, width=64, height=64)
    await imagine(
        harness, prompt="a dog", init_image=init, mask=mask, parameters="a dog\nSteps: 4, Seed: 3, Mask blur: 8"
    )
    params = executor.submitted[0].params
    assert (params.mask, params.mask_blur) == (hashlib.sha256(data).hexdigest(), 8)
    assert harness.standin.downloads == [init.id, mask.id]


async def test_an_init_image_with_transparency_redraws_its_transparent_area(
    harness: Harness, executor: FakeExecutor
) -> None:
    holey = Image.open(io.BytesIO(tiny_png(64, 64, seed=5))).convert("RGBA")
    holey.paste((0, 0, 0, 0), (0, 0, 32, 32))
    await imagine(harness, prompt="a dog", init_image=harness.standin.attachment("cat.png", _png(holey)))
    params = executor.submitted[0].params
    assert params.mask is not None
    stored = Image.open(harness.settings.data_dir / "blobs" / params.mask)
    assert stored.getbbox() == (0, 0, 32, 32)


async def test_an_empty_mask_or_a_mask_without_an_image_is_refused(harness: Harness, executor: FakeExecutor) -> None:
    init = harness.standin.attachment("cat.png", tiny_png(64, 64, seed=5))
    empty = harness.standin.attachment("mask.png", _mask(painted=False))
    handle = await imagine(harness, prompt="a dog", init_image=init, mask=empty)
    assert_withdrawn(harness.standin, handle, "The mask is empty")
    alone = await imagine(harness, prompt="a dog", mask=harness.standin.attachment("mask.png", _mask()))
    assert_ephemeral(harness.standin, alone, "A mask goes with an init image")
    assert executor.submitted == []
