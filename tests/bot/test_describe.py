"""`/describe` through discord.py against the stand-in: the slash command on an attachment, the Describe message
command on any message's image, the suggestion buttons (each the clicker's own /imagine), and the rating policy."""

from __future__ import annotations

from tests.bot.harness import ALICE, BOB, SERVER_ADMIN, Harness
from tests.bot.helpers import assert_ephemeral, callback_of, slash
from tests.bot.standin import InteractionHandle, custom_ids
from tests.bot.test_upscale import press
from tests.fakes import FakeExecutor, tiny_png


async def describe(harness: Harness, user: object = ALICE, **options: object) -> InteractionHandle:
    upload = harness.standin.attachment("art.png", tiny_png(96, 64, seed=4), width=96, height=64)
    return await slash(harness, "describe", user, image=upload, **options)


async def test_describe_queues_a_tagger_job_and_answers_with_four_prompts(
    harness: Harness, executor: FakeExecutor
) -> None:
    handle = await describe(harness, threshold=0.3)
    [job] = executor.submitted
    params = job.params
    assert (params.is_describe, params.tagger, params.tag_threshold, params.width, params.height) == (
        True, "wd-vit-tagger-v3", 0.3, 96, 64,
    )  # fmt: skip
    assert callback_of(harness.standin, handle)["type"] == 5 and harness.standin.downloads
    message = harness.standin.original(handle)
    content = message["content"]
    assert "**Described** by `wd-vit-tagger-v3` · rating **general** (general 0.90, sensitive 0.03" in content
    assert "**1.** hatsune miku, 1girl, solo, long hair, smile, hat" in content and "**4.**" in content
    assert message["attachments"][0]["filename"].endswith("-described.png")
    ids = custom_ids(message)
    assert [i.split(":")[1] for i in ids] == ["suggest"] * 4 + ["delete"]


async def test_a_suggestion_button_imagines_it_as_the_clickers_job(harness: Harness, executor: FakeExecutor) -> None:
    await slash(harness, "settings server", SERVER_ADMIN, steps=12)
    handle = await describe(harness)
    job_id = executor.submitted[0].job_id
    clicked = await press(harness, handle, f"easel:suggest:{job_id}:1", BOB)
    job = executor.submitted[-1]
    assert job.user_id == str(BOB.id) and not job.params.is_describe
    # The second suggestion: the characters and the most confident half of the general tags.
    assert job.params.prompt == "hatsune miku, 1girl, solo, long hair, smile, hat \\(object\\), tag 0, tag 1"
    assert job.params.steps == 12
    assert callback_of(harness.standin, clicked)["type"] == 5


async def test_the_describe_message_command_reads_a_messages_image(harness: Harness, executor: FakeExecutor) -> None:
    upload = harness.standin.attachment("fanart.webp", tiny_png(80, 80, seed=2), width=80, height=80)
    message_id = harness.standin.user_message(ALICE, "look at this", upload)
    handle = await harness.standin.message_command("Describe", BOB, message_id)  # type: ignore[arg-type]
    await harness.settle(handle)
    assert executor.submitted[-1].params.is_describe and executor.submitted[-1].user_id == str(BOB.id)
    plain = harness.standin.user_message(ALICE, "no picture here")
    refused = await harness.standin.message_command("Describe", BOB, plain)  # type: ignore[arg-type]
    await harness.settle(refused)
    assert_ephemeral(harness.standin, refused, "no PNG, JPEG or WebP image")


async def test_an_unknown_tagger_is_refused_before_the_download(harness: Harness, executor: FakeExecutor) -> None:
    handle = await describe(harness, tagger="wd-nothing")
    assert_ephemeral(harness.standin, handle, "Unknown tagger 'wd-nothing'")
    assert executor.submitted == [] and harness.standin.downloads == []


async def test_a_server_may_treat_explicit_ratings_as_nsfw(harness: Harness, executor: FakeExecutor) -> None:
    executor.rating = "explicit"
    shown = await describe(harness)
    assert "rating **explicit**" in harness.standin.original(shown)["content"]  # the option is off by default
    await slash(harness, "nsfw set", SERVER_ADMIN, rating=True, outside="spoiler")
    spoilered = await describe(harness)
    message = harness.standin.original(spoilered)
    assert "**1.** ||" in message["content"] and message["attachments"][0]["filename"].startswith("SPOILER_")
    await slash(harness, "nsfw set", SERVER_ADMIN, outside="refuse")
    refused = await describe(harness)
    content = harness.standin.original(refused)["content"]
    assert "rates this image **explicit**" in content and not harness.standin.original(refused)["attachments"]
