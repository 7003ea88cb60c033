"""Zoom Out, Make Square, Pan and per-image Vary on a result, through discord.py against the stand-in."""

from __future__ import annotations

import io

from PIL import Image

from tests.bot.harness import ALICE, BOB, Harness
from tests.bot.helpers import callback_of, imagine, job_id_of
from tests.bot.standin import InteractionHandle, custom_ids
from tests.fakes import FakeExecutor


async def press(harness: Harness, handle: InteractionHandle, custom_id: str) -> InteractionHandle:
    message = harness.standin.original(handle)
    assert custom_id in custom_ids(message)
    clicked = await harness.standin.click(int(message["id"]), custom_id, BOB)
    await harness.settle(clicked)
    return clicked


def blob(harness: Harness, digest: str | None) -> Image.Image:
    assert digest is not None
    return Image.open(io.BytesIO((harness.settings.data_dir / "blobs" / digest).read_bytes()))


async def test_zoom_out_is_an_inpaint_of_a_larger_canvas_with_the_image_in_the_middle(
    harness: Harness, executor: FakeExecutor
) -> None:
    first = await imagine(harness, ALICE, prompt="a red fox", seed="42", width=64, height=96)
    job_id = job_id_of(harness.standin, first)
    clicked = await press(harness, first, f"easel:outzoom2:{job_id}:0")
    assert callback_of(harness.standin, clicked)["type"] == 5
    params = executor.submitted[-1].params
    assert (params.width, params.height, params.seed, params.prompt) == (128, 192, 42, "a red fox")
    assert (params.denoising_strength, params.inpainting_fill, params.mask_blur) == (1.0, "fill", 4)
    assert executor.submitted[-1].user_id == str(BOB.id)
    canvas, mask = blob(harness, params.init_image), blob(harness, params.mask)
    assert canvas.size == mask.size == (128, 192)
    assert mask.getpixel((64, 96)) == 0 and mask.getpixel((2, 2)) == 255  # the picture kept, the border drawn


async def test_pan_left_on_a_single_image_and_vary_or_pan_one_image_of_a_batch_from_the_menu(
    harness: Harness, executor: FakeExecutor
) -> None:
    single = await imagine(harness, ALICE, prompt="a red fox", seed="7", width=64, height=64)
    await press(harness, single, f"easel:outleft:{job_id_of(harness.standin, single)}:0")
    assert (executor.submitted[-1].params.width, executor.submitted[-1].params.height) == (96, 64)

    batch = await imagine(harness, ALICE, prompt="a blue fox", seed="10", width=64, height=64, batch_size=2)
    job_id = job_id_of(harness.standin, batch)
    message = harness.standin.original(batch)
    chosen = await harness.standin.choose(int(message["id"]), f"easel:imagemenu:{job_id}", ["up:1"], BOB)
    await harness.settle(chosen)
    panned = executor.submitted[-1].params
    assert (panned.width, panned.height, panned.seed, panned.batch_size) == (64, 96, 11, 1)
    chosen = await harness.standin.choose(int(message["id"]), f"easel:imagemenu:{job_id}", ["vary:0"], BOB)
    await harness.settle(chosen)
    varied = executor.submitted[-1].params
    assert (varied.seed, varied.batch_size, varied.subseed_strength) == (10, 1, 0.15)


async def test_vary_region_shows_the_grid_then_redraws_the_chosen_cells_with_the_new_prompt(
    harness: Harness, executor: FakeExecutor
) -> None:
    first = await imagine(harness, ALICE, prompt="a red fox", seed="42", width=96, height=96)
    job_id = job_id_of(harness.standin, first)
    shown = await press(harness, first, f"easel:region:{job_id}:0")
    assert callback_of(harness.standin, shown)["type"] == 5  # "thinking", only to the clicker
    [followup] = [r for r in harness.standin.sent(shown) if r.method == "POST" and r.path.startswith("/webhooks/")]
    assert followup.files and followup.files[0].filename == "region-grid.png"
    [form_id] = [c["custom_id"] for row in followup.json["components"] for c in row["components"]]
    message_id = int(harness.standin.messages[max(harness.standin.messages)]["id"])
    opened = await harness.standin.click(message_id, form_id, BOB)
    await harness.settle(opened)
    modal = harness.standin.modal(opened)
    assert [label["component"]["type"] for label in modal["components"]] == [4, 3, 19]
    submitted = await harness.standin.submit_modal(
        opened, **{"cells": ["0", "4"]}, **{modal["components"][0]["component"]["custom_id"]: "a red fox wearing a hat"}
    )
    await harness.settle(submitted)
    params = executor.submitted[-1].params
    assert (params.prompt, params.seed, params.width, params.height) == ("a red fox wearing a hat", 42, 96, 96)
    assert (params.denoising_strength, params.inpainting_fill, params.mask_blur) == (0.75, "original", 4)
    mask = blob(harness, params.mask)
    assert mask.getpixel((10, 10)) == 255 and mask.getpixel((48, 48)) == 255 and mask.getpixel((90, 10)) == 0


async def test_vary_region_with_an_uploaded_mask_and_with_nothing_chosen(
    harness: Harness, executor: FakeExecutor
) -> None:
    first = await imagine(harness, ALICE, prompt="a red fox", seed="42", width=64, height=64)
    job_id = job_id_of(harness.standin, first)
    shown = await press(harness, first, f"easel:region:{job_id}:0")
    [followup] = [r for r in harness.standin.sent(shown) if r.method == "POST" and r.path.startswith("/webhooks/")]
    [form_id] = [c["custom_id"] for row in followup.json["components"] for c in row["components"]]
    message_id = int(harness.standin.messages[max(harness.standin.messages)]["id"])
    nothing = await harness.standin.click(message_id, form_id, BOB)
    await harness.settle(nothing)
    refused = await harness.standin.submit_modal(nothing)
    await harness.settle(refused)
    assert "Choose at least one cell" in str(harness.standin.sent(refused)[-1].json)
    painted = Image.new("L", (64, 64))
    painted.paste(255, (0, 0, 20, 20))
    out = io.BytesIO()
    painted.save(out, format="PNG")
    upload = harness.standin.attachment("mask.png", out.getvalue())
    again = await harness.standin.click(message_id, form_id, BOB)
    await harness.settle(again)
    submitted = await harness.standin.submit_modal(again, mask=[upload])
    await harness.settle(submitted)
    params = executor.submitted[-1].params
    assert blob(harness, params.mask).getbbox() == (0, 0, 20, 20)


async def test_custom_zoom_takes_a_factor_an_aspect_ratio_and_a_new_prompt(
    harness: Harness, executor: FakeExecutor
) -> None:
    first = await imagine(harness, ALICE, prompt="a red fox", seed="42", width=64, height=64)
    job_id = job_id_of(harness.standin, first)
    opened = await press(harness, first, f"easel:outcustom:{job_id}:0")
    submitted = await harness.standin.submit_modal(
        opened, factor="1.25", aspect="2:1", prompt="a red fox in a wide meadow"
    )
    await harness.settle(submitted)
    params = executor.submitted[-1].params
    assert (params.width, params.height, params.prompt) == (160, 80, "a red fox in a wide meadow")
    wrong = await press(harness, first, f"easel:outcustom:{job_id}:0")
    refused = await harness.standin.submit_modal(wrong, factor="3")
    await harness.settle(refused)
    assert "Zoom out goes from 1 to 2" in str(harness.standin.sent(refused)[-1].json)
