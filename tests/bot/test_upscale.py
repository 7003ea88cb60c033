"""Upscaling through discord.py against the stand-in: `/upscale` on an attached image, and Midjourney's Upscale
(Subtle) and (Creative) on each image of a result, with the server's upscaler."""

from __future__ import annotations

from tests.bot.harness import ALICE, BOB, SERVER_ADMIN, Harness
from tests.bot.helpers import assert_ephemeral, callback_of, edits, imagine, job_id_of, slash
from tests.bot.standin import InteractionHandle, custom_ids
from tests.bot.test_img2img import assert_withdrawn
from tests.fakes import FakeExecutor, tiny_png


async def press(harness: Harness, handle: InteractionHandle, custom_id: str, user: object = ALICE) -> InteractionHandle:
    message = harness.standin.original(handle)
    assert custom_id in custom_ids(message)
    clicked = await harness.standin.click(int(message["id"]), custom_id, user)  # type: ignore[arg-type]
    await harness.settle(clicked)
    return clicked


async def test_upscale_an_attached_image_by_four_with_lanczos_by_default(
    harness: Harness, executor: FakeExecutor
) -> None:
    upload = harness.standin.attachment("cat.png", tiny_png(80, 48, seed=3))  # no size declared: read from the file
    handle = await slash(harness, "upscale", ALICE, image=upload)
    [job] = executor.submitted
    params = job.params
    assert (params.is_extras, params.extras_upscaler, params.upscale_by, params.extras_size()) == (
        True, "Lanczos", 4.0, (320, 192),
    )  # fmt: skip
    assert harness.standin.downloads == [upload.id]
    assert callback_of(harness.standin, handle)["type"] == 5
    assert "Upscale** 80×48 → 320×192 with Lanczos" in edits(harness.standin, handle)[0].json["content"]


async def test_upscale_with_a_model_by_name_and_to_a_size(harness: Harness, executor: FakeExecutor) -> None:
    upload = harness.standin.attachment("cat.png", tiny_png(80, 48, seed=3), width=80, height=48)
    await slash(harness, "upscale", ALICE, image=upload, upscaler="4x-ultrasharp", width=200, height=100)
    params = executor.submitted[0].params
    assert (params.extras_upscaler, params.upscale_to, params.extras_size()) == ("4x-UltraSharp", "200x100", (200, 120))


async def test_upscale_refuses_an_unknown_upscaler_or_a_too_large_result_before_downloading(
    harness: Harness, executor: FakeExecutor
) -> None:
    upload = harness.standin.attachment("cat.png", tiny_png(1024, 1024, seed=3), width=1024, height=1024)
    unknown = await slash(harness, "upscale", ALICE, image=upload, upscaler="4x-Nothing")
    assert_ephemeral(harness.standin, unknown, "Unknown upscaler '4x-Nothing'")
    big = await slash(harness, "upscale", ALICE, image=upload, scale=4.0)
    assert_ephemeral(harness.standin, big, "would make 4096x4096", "upscale by less")
    latent = await slash(harness, "upscale", ALICE, image=upload, upscaler="Latent", scale=2.0)
    assert_ephemeral(harness.standin, latent, "inside hires fix only")
    assert executor.submitted == [] and harness.standin.downloads == []


async def test_each_image_of_a_batch_has_its_own_subtle_and_creative_buttons(
    harness: Harness, executor: FakeExecutor
) -> None:
    first = await imagine(harness, prompt="a red fox", seed="42", batch_size=2, width=64, height=96)
    job_id = job_id_of(harness.standin, first)
    message = harness.standin.original(first)
    labels = [[c.get("label") for c in row["components"]] for row in message["components"]]
    assert labels[1:4] == [
        ["Subtle 1", "Subtle 2"],
        ["Creative 1", "Creative 2"],
        ["Vary (Region) 1", "Vary (Region) 2"],
    ]
    menu = message["components"][4]["components"][0]
    assert menu["type"] == 3 and len(menu["options"]) == 12  # Vary, Zoom Out 2x, Pan x4 for each image

    creative = await press(harness, first, f"easel:upscale:{job_id}:1", BOB)
    params = executor.submitted[-1].params
    assert (params.seed, params.batch_size, params.enable_hr, params.hr_scale, params.hr_upscaler) == (
        43, 1, True, 2.0, "Latent",
    )  # fmt: skip
    assert executor.submitted[-1].user_id == str(BOB.id) and callback_of(harness.standin, creative)["type"] == 5

    await press(harness, first, f"easel:subtle:{job_id}:1", BOB)
    subtle = executor.submitted[-1].params
    attachment = harness.standin.original(first)["attachments"][1]
    assert harness.standin.downloads == [int(attachment["id"])]  # the second image, from Discord
    assert (subtle.is_extras, subtle.extras_upscaler, subtle.upscale_by, subtle.extras_size()) == (
        True, "Lanczos", 2.0, (128, 192),
    )  # fmt: skip


async def test_the_server_upscaler_drives_both_upscales_and_is_checked_when_set(
    harness: Harness, executor: FakeExecutor
) -> None:
    refused = await slash(harness, "settings server", SERVER_ADMIN, upscaler="4x-Nothing")
    assert_ephemeral(harness.standin, refused, "Unknown upscaler")
    await slash(harness, "settings server", SERVER_ADMIN, upscaler="R-ESRGAN 4x+ Anime6B")
    first = await imagine(harness, prompt="a red fox", seed="42", width=64, height=64)
    job_id = job_id_of(harness.standin, first)
    await press(harness, first, f"easel:upscale:{job_id}:0")
    creative = executor.submitted[-1].params
    assert (creative.hr_upscaler, creative.denoising_strength) == ("R-ESRGAN 4x+ Anime6B", 0.4)
    await press(harness, first, f"easel:subtle:{job_id}:0")
    assert executor.submitted[-1].params.extras_upscaler == "R-ESRGAN 4x+ Anime6B"
    upload = harness.standin.attachment("cat.png", tiny_png(80, 48, seed=3))
    await slash(harness, "upscale", ALICE, image=upload, scale=2.0)
    assert executor.submitted[-1].params.extras_upscaler == "R-ESRGAN 4x+ Anime6B"


async def test_an_old_upscale_button_without_an_image_number_still_works(
    harness: Harness, executor: FakeExecutor
) -> None:
    first = await imagine(harness, prompt="a red fox", seed="42", width=64, height=64)
    message = harness.standin.original(first)
    old = f"easel:upscale:{job_id_of(harness.standin, first)}"  # as messages from before per-image buttons carry
    button = message["components"][2]["components"][0]
    button["custom_id"] = old
    clicked = await harness.standin.click(int(message["id"]), old, ALICE)
    await harness.settle(clicked)
    assert executor.submitted[-1].params.enable_hr and executor.submitted[-1].params.seed == 42


async def test_an_image_whose_real_size_makes_too_large_a_result_is_refused_after_download(
    harness: Harness, executor: FakeExecutor
) -> None:
    upload = harness.standin.attachment("cat.png", tiny_png(1024, 1024, seed=3))  # no size declared
    handle = await slash(harness, "upscale", ALICE, image=upload, scale=4.0)
    assert_withdrawn(harness.standin, handle, "would make 4096x4096")
    assert executor.submitted == []


async def test_an_upscale_result_offers_delete_and_subtle_and_show_upscales_again(
    harness: Harness, executor: FakeExecutor
) -> None:
    upload = harness.standin.attachment("cat.png", tiny_png(80, 48, seed=3), width=80, height=48)
    handle = await slash(harness, "upscale", ALICE, image=upload, scale=2.0)
    job_id = job_id_of(harness.standin, handle)
    assert custom_ids(harness.standin.original(handle)) == [f"easel:delete:{job_id}", f"easel:subtle:{job_id}:0"]
    await slash(harness, "show", ALICE, job_id=job_id)
    first, again = (job.params for job in executor.submitted)
    assert again == first and again.is_extras
