"""The detailer through discord.py against the stand-in: `/imagine detailer:`, the server's detailer in `/settings`,
a pasted block's ADetailer keys, and the Fix faces button on a result."""

from __future__ import annotations

from engine.detailer import DetailerTab
from tests.bot.harness import ALICE, BOB, SERVER_ADMIN, Harness
from tests.bot.helpers import assert_ephemeral, callback_of, imagine, job_id_of, slash
from tests.bot.test_upscale import press
from tests.fakes import FakeExecutor


async def test_imagine_with_a_detailer_runs_it_on_the_job(harness: Harness, executor: FakeExecutor) -> None:
    await imagine(harness, prompt="a portrait", detailer="face_yolov8n")
    assert executor.submitted[-1].params.detailers == (DetailerTab(model="face_yolov8n"),)
    refused = await imagine(harness, prompt="a portrait", detailer="feet_yolov8n")
    assert_ephemeral(harness.standin, refused, "Unknown detector 'feet_yolov8n'")
    assert len(executor.submitted) == 1


async def test_the_detailer_option_offers_the_installed_detectors(harness: Harness) -> None:
    handle = await harness.standin.autocomplete("imagine", ALICE, "detailer", prompt="x", detailer="")
    body = (await harness.standin.callback(handle)).json
    assert [choice["value"] for choice in body["data"]["choices"]] == ["None", "face_yolov8n", "hand_yolov8n"]


async def test_a_server_detailer_applies_to_every_job_and_none_turns_it_off(
    harness: Harness, executor: FakeExecutor
) -> None:
    refused = await slash(harness, "settings server", SERVER_ADMIN, detailer="feet")
    assert_ephemeral(harness.standin, refused, "Unknown detector")
    await slash(harness, "settings server", SERVER_ADMIN, detailer="hand_yolov8n.pt")
    await imagine(harness, prompt="a portrait")
    assert executor.submitted[-1].params.detailers == (DetailerTab(model="hand_yolov8n"),)
    await imagine(harness, prompt="a portrait", detailer="None")
    assert executor.submitted[-1].params.detailers == ()


async def test_a_pasted_block_with_adetailer_keys_runs_them_and_says_what_is_missing(
    harness: Harness, executor: FakeExecutor
) -> None:
    block = (
        "a portrait\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 512x512, ADetailer model: "
        "face_yolov8n.pt, ADetailer confidence: 0.3, ADetailer denoising strength: 0.45, ADetailer model 2nd: "
        "mediapipe_face_mesh, ADetailer version: 24.9.0"
    )
    handle = await imagine(harness, prompt=block)
    assert executor.submitted[-1].params.detailers == (DetailerTab(model="face_yolov8n", denoising_strength=0.45),)
    content = harness.standin.original(handle)["content"]
    assert "mediapipe" in content


async def test_fix_faces_details_the_results_images_alone(harness: Harness, executor: FakeExecutor) -> None:
    first = await imagine(harness, prompt="two friends", seed="42", batch_size=2, width=64, height=64)
    job_id = job_id_of(harness.standin, first)
    clicked = await press(harness, first, f"easel:fixfaces:{job_id}", BOB)
    job = executor.submitted[-1]
    params = job.params
    attachments = harness.standin.original(first)["attachments"]
    assert harness.standin.downloads == [int(a["id"]) for a in attachments]  # both images, from Discord
    assert params.is_detail_only and len(params.detail_images) == 2 and params.batch_size == 2
    assert (params.seed, params.prompt, params.detailers) == (42, "two friends", (DetailerTab(model="face_yolov8n"),))
    assert job.user_id == str(BOB.id) and callback_of(harness.standin, clicked)["type"] == 5


async def test_fix_faces_says_what_to_install_without_a_face_detector(harness: Harness, executor: FakeExecutor) -> None:
    harness.networks.detectors_ = ["hand_yolov8n"]
    first = await imagine(harness, prompt="a portrait", seed="42", width=64, height=64)
    clicked = await press(harness, first, f"easel:fixfaces:{job_id_of(harness.standin, first)}")
    assert_ephemeral(harness.standin, clicked, "needs a face detector", "convert-detector face_yolov8n.pt")
    assert len(executor.submitted) == 1


async def test_model_list_shows_the_detectors_and_the_refused_pickle(harness: Harness) -> None:
    from tests.bot.harness import LISTED_ADMIN

    handle = await harness.standin.slash("model list", LISTED_ADMIN)
    await harness.settle(handle)
    text = assert_ephemeral(harness.standin, handle, "**Detectors** (2 usable, for the detailer)")
    assert "`face_yolov8n` (YOLOv8 detection, 1 class)" in text
    assert "`eyes_yolov8n`: an ultralytics pickle, which can run code when loaded" in text
