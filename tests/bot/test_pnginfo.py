"""The "Parameters" message command (PNG info on any image) and its buttons, through discord.py against the
stand-in: an Easel result from the job store, a member's A1111 or NovelAI file read from its metadata."""

from __future__ import annotations

import io

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.images import encode_jpeg, encode_png
from tests.bot.harness import ALICE, BOB, Harness
from tests.bot.helpers import assert_ephemeral, callback_of, imagine, job_id_of
from tests.bot.standin import EPHEMERAL, InteractionHandle, Json
from tests.fakes import FakeExecutor, tiny_png

PASTED = (
    "a lighthouse at dusk, (oil painting:1.2)\nNegative prompt: blurry\n"
    "Steps: 7, Sampler: Euler a, CFG scale: 5, Seed: 1234, Size: 64x96, Model: someone-elses-model"
)


async def parameters(harness: Harness, message_id: int, user: object = BOB) -> InteractionHandle:
    handle = await harness.standin.message_command("Parameters", user, message_id)  # type: ignore[arg-type]
    await harness.settle(handle)
    return handle


def reply(harness: Harness, handle: InteractionHandle) -> Json:
    """The ephemeral reply's message, whether it answered at once or after a deferred download."""
    for record in reversed(harness.standin.sent(handle)):
        if isinstance(record.json, dict) and (record.json.get("embeds") or record.json.get("data", {}).get("embeds")):
            body: Json = record.json.get("data", record.json)
            assert body["flags"] & EPHEMERAL
            return body
    raise AssertionError("no embed was sent")


def shown(harness: Harness, handle: InteractionHandle) -> str:
    return str(reply(harness, handle)["embeds"][0]["description"])


def reply_message_id(harness: Harness, handle: InteractionHandle) -> int:
    return int(harness.standin.original(handle)["id"])


async def test_an_easel_result_shows_its_parameters_and_runs_again(harness: Harness, executor: FakeExecutor) -> None:
    first = await imagine(harness, ALICE, prompt="a red fox", negative_prompt="blurry", seed="42", steps=3)
    result_id = int(harness.standin.original(first)["id"])
    handle = await parameters(harness, result_id)
    text = shown(harness, handle)
    assert text.startswith("```\na red fox\nNegative prompt: blurry\nSteps: 3, Sampler: DPM++ 2M")
    assert "Seed: 42" in text
    assert f"Easel job `{job_id_of(harness.standin, first)}`" in reply(harness, handle)["embeds"][0]["footer"]["text"]
    assert not harness.standin.downloads  # read from the job store, not the file
    again = await harness.standin.click(reply_message_id(harness, handle), "easel:pinfo:run", BOB)
    await harness.settle(again)
    original, rerun = (job.params for job in executor.submitted)
    assert rerun == original  # same prompt, seed, steps: the same image, as a job of Bob's
    assert executor.submitted[1].user_id == str(BOB.id)


async def test_a_members_a1111_png_is_read_and_can_be_run_or_edited(harness: Harness, executor: FakeExecutor) -> None:
    png = encode_png(Image.new("RGB", (64, 96), "blue"), PASTED)
    upload = harness.standin.attachment("from-civitai.png", png, width=64, height=96)
    message_id = harness.standin.user_message(ALICE, "look at this", upload)
    handle = await parameters(harness, message_id)
    assert shown(harness, handle) == f"```\n{PASTED}\n```"
    assert harness.standin.downloads == [upload.id]
    again = await harness.standin.click(reply_message_id(harness, handle), "easel:pinfo:run", BOB)
    await harness.settle(again)
    [job] = executor.submitted
    assert (job.params.prompt, job.params.steps, job.params.sampler, job.params.seed) == (
        "a lighthouse at dusk, (oil painting:1.2)", 7, "Euler a", 1234,
    )  # fmt: skip
    assert "someone-elses-model" in str(harness.standin.sent(again))  # the missing model is named in a note
    edit = await harness.standin.click(reply_message_id(harness, handle), "easel:pinfo:edit", BOB)
    await harness.settle(edit)
    modal = harness.standin.modal(edit)
    values = [label["component"].get("value", "") for label in modal["components"]]
    assert values[0] == "a lighthouse at dusk, (oil painting:1.2)" and values[1] == "blurry"
    assert "Steps: 7" in values[2] and "Seed: 1234" in values[2]
    ids = [label["component"]["custom_id"] for label in modal["components"]]
    submitted = await harness.standin.submit_modal(edit, **{ids[0]: "a lighthouse at dawn"})
    await harness.settle(submitted)
    edited = executor.submitted[1].params
    assert (edited.prompt, edited.steps, edited.seed, edited.negative_prompt) == (
        "a lighthouse at dawn",
        7,
        1234,
        "blurry",
    )
    assert executor.submitted[1].user_id == str(BOB.id)


def novelai_png() -> bytes:
    info = PngInfo()
    info.add_text("Description", "1girl, masterpiece")
    info.add_text("Software", "NovelAI")
    info.add_text("Comment", '{"steps": 28, "sampler": "k_euler", "seed": 7, "scale": 11, "uc": "lowres"}')
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


async def test_novelai_and_jpeg_files_are_read_and_plain_ones_say_why_not(harness: Harness) -> None:
    nai = harness.standin.user_message(ALICE, "", harness.standin.attachment("nai.png", novelai_png()))
    assert "Steps: 28, Sampler: Euler, CFG scale: 11, Seed: 7, Size: 64x64, Clip skip: 2" in shown(
        harness, await parameters(harness, nai)
    )
    jpeg = encode_jpeg(Image.new("RGB", (64, 64)), PASTED)
    photo = harness.standin.user_message(
        ALICE, "", harness.standin.attachment("a.jpg", jpeg, content_type="image/jpeg")
    )
    assert "Seed: 1234" in shown(harness, await parameters(harness, photo))
    plain = harness.standin.user_message(ALICE, "", harness.standin.attachment("plain.png", tiny_png(64, 64, seed=1)))
    handle = await parameters(harness, plain)
    assert "carries no generation parameters" in str(harness.standin.sent(handle)[-1].json)


async def test_messages_without_an_image_or_with_a_huge_one_are_refused_before_any_download(
    harness: Harness,
) -> None:
    text_only = harness.standin.user_message(ALICE, "just words")
    assert_ephemeral(harness.standin, await parameters(harness, text_only), "has no PNG, JPEG or WebP image")
    huge = harness.standin.attachment("huge.png", b"\x89PNG", size=200 * 1024 * 1024)
    refused = await parameters(harness, harness.standin.user_message(ALICE, "", huge))
    assert_ephemeral(harness.standin, refused, "images may be up to 20 MiB")
    assert not harness.standin.downloads
    assert callback_of(harness.standin, refused)["type"] == 4
