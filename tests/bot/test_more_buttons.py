"""The Upscale and Edit buttons on a result, through discord.py against the stand-in."""

from __future__ import annotations

from tests.bot.harness import ALICE, BOB, Harness
from tests.bot.helpers import PNG_MAGIC, assert_ephemeral, callback_of, click, contents, edits, imagine, job_id_of
from tests.bot.standin import InteractionHandle
from tests.fakes import FakeExecutor, tiny_png


async def test_upscale_reruns_the_same_seed_with_hires_fix_x2_after_a_restart(
    harness: Harness, executor: FakeExecutor
) -> None:
    first = await imagine(harness, prompt="a red fox", seed="42", width=64, height=96)
    await harness.restart()
    upscaled = await click(harness, first, "upscale", BOB)
    original, params = (job.params for job in executor.submitted)
    assert (params.enable_hr, params.hr_scale, params.hr_upscaler, params.denoising_strength) == (
        True, 2.0, "Latent", 0.5,
    )  # fmt: skip
    assert params.replace(enable_hr=False, denoising_strength=None) == original
    assert callback_of(harness.standin, upscaled) == {"type": 5}
    assert "hires fix → 128×192" in edits(harness.standin, upscaled)[0].json["content"]
    assert edits(harness.standin, upscaled)[-1].files[0].data.startswith(PNG_MAGIC)
    assert executor.submitted[1].user_id == str(BOB.id)


async def test_upscale_of_a_hires_result_doubles_what_was_shown(harness: Harness, executor: FakeExecutor) -> None:
    first = await imagine(harness, prompt="a red fox", width=64, height=64, hires=True, hires_scale=1.5)
    await click(harness, first, "upscale", ALICE)
    assert executor.submitted[1].params.hr_scale == 3.0


async def test_upscale_past_the_pixel_limit_is_refused(harness: Harness, executor: FakeExecutor) -> None:
    first = await imagine(harness, prompt="a red fox", width=1024, height=1024, hires=True, hires_scale=1.5)
    refused = await click(harness, first, "upscale", ALICE)
    assert_ephemeral(harness.standin, refused, "Upscaling ×2 would make 3072×3072", "at most 4,194,304 pixels")
    assert len(executor.submitted) == 1


async def test_upscale_of_an_img2img_result_is_refused(harness: Harness, executor: FakeExecutor) -> None:
    upload = harness.standin.attachment("cat.png", tiny_png(64, 64, seed=3))
    first = await imagine(harness, prompt="a cat", init_image=upload)
    refused = await click(harness, first, "upscale", ALICE)
    assert_ephemeral(harness.standin, refused, "Upscale (Creative) redraws text-to-image results", "Subtle")


async def open_edit(harness: Harness, first: InteractionHandle) -> InteractionHandle:
    message = harness.standin.original(first)
    custom_id = f"easel:edit:{job_id_of(harness.standin, first)}"
    clicked = await harness.standin.click(int(message["id"]), custom_id, BOB)
    await harness.settle(clicked)
    return clicked


async def test_edit_opens_a_modal_prefilled_with_the_job(harness: Harness) -> None:
    first = await imagine(harness, prompt="a red fox", negative_prompt="blurry", seed="42", width=64, height=96)
    modal = harness.standin.modal(await open_edit(harness, first))
    job_id = job_id_of(harness.standin, first)
    assert modal["custom_id"] == f"easel:editform:{job_id}"
    values = [label["component"]["value"] for label in modal["components"]]
    assert values == [
        "a red fox",
        "blurry",
        "Steps: 4, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 64x96, "
        'Model: "builtin:tiny", Version: Easel 0.1.0',
    ]


async def test_submitting_the_edit_modal_queues_a_new_job_for_the_clicker(
    harness: Harness, executor: FakeExecutor
) -> None:
    first = await imagine(harness, prompt="a red fox", seed="42")
    clicked = await open_edit(harness, first)
    ids = [label["component"]["custom_id"] for label in harness.standin.modal(clicked)["components"]]
    submitted = await harness.standin.submit_modal(
        clicked, **{ids[0]: "a blue fox", ids[2]: "Steps: 6, Sampler: Euler a, CFG scale: 5, Seed: 42, Size: 64x96"}
    )
    await harness.settle(submitted)
    params = executor.submitted[1].params
    assert (params.prompt, params.steps, params.sampler, params.cfg_scale, params.seed) == (
        "a blue fox", 6, "Euler a", 5.0, 42,
    )  # fmt: skip
    assert (params.width, params.height, params.model) == (64, 96, "builtin:tiny")
    assert executor.submitted[1].user_id == str(BOB.id)
    assert callback_of(harness.standin, submitted) == {"type": 5}
    final = edits(harness.standin, submitted)[-1]
    assert "a blue fox" in final.json["content"] and final.files


async def test_an_edit_naming_an_unknown_model_keeps_the_jobs_model_and_says_so(
    harness: Harness, executor: FakeExecutor
) -> None:
    # The one paste rule: a model this server does not have falls back, with a note (as /imagine and the CLI do).
    first = await imagine(harness, prompt="a red fox", model="anime-v3")
    clicked = await open_edit(harness, first)
    box = harness.standin.modal(clicked)["components"][2]["component"]["custom_id"]
    submitted = await harness.standin.submit_modal(clicked, **{box: "Steps: 4, Seed: 1, Model: anime-v4"})
    await harness.settle(submitted)
    assert [job.params.model for job in executor.submitted] == ["anime-v3", "anime-v3"]
    note = "The pasted model `anime-v4` is not available here; used `anime-v3`."
    assert note in contents(harness.standin, submitted)[-1]


async def test_an_edit_naming_another_model_of_the_server_uses_it(harness: Harness, executor: FakeExecutor) -> None:
    first = await imagine(harness, prompt="a red fox", model="anime-v3")
    clicked = await open_edit(harness, first)
    box = harness.standin.modal(clicked)["components"][2]["component"]["custom_id"]
    submitted = await harness.standin.submit_modal(clicked, **{box: "Steps: 4, Seed: 1, Model: photo-xl"})
    await harness.settle(submitted)
    assert executor.submitted[-1].params.model == "photo-xl"


async def test_an_edit_of_an_img2img_job_keeps_its_init_image(harness: Harness, executor: FakeExecutor) -> None:
    upload = harness.standin.attachment("cat.png", tiny_png(64, 64, seed=3))
    first = await imagine(harness, prompt="a cat", init_image=upload, denoising_strength=0.6)
    submitted = await harness.standin.submit_modal(await open_edit(harness, first))
    await harness.settle(submitted)
    original, edited = (job.params for job in executor.submitted)
    assert edited == original and edited.init_image is not None
