"""/info and /show through discord.py against the stand-in: your jobs with their queue place and result links; a
finished job posted again (regenerated from its params, same seed) with working buttons."""

from __future__ import annotations

from typing import Any

from bot.store import JobStatus
from tests.bot.harness import ALICE, BOB, Harness
from tests.bot.helpers import PNG_MAGIC, assert_ephemeral, callback_of, click, imagine, job_id_of
from tests.bot.standin import CHANNEL_ID, EPHEMERAL, GUILD_ID, InteractionHandle, custom_ids
from tests.fakes import FakeExecutor


async def info(harness: Harness, user: Any = ALICE) -> str:
    handle = await harness.standin.slash("info", user)
    body = (await harness.standin.callback(handle)).json
    data = body["data"]
    assert isinstance(data, dict) and body["type"] == 4 and data["flags"] & EPHEMERAL
    [embed] = data["embeds"]
    return str(embed["description"])


async def show(harness: Harness, job_id: str, user: Any = BOB, *, settle: bool = True) -> InteractionHandle:
    handle = await harness.standin.slash("show", user, job_id=job_id)
    if settle:  # every job followed delivers its result (never while a paused job waits)
        await harness.settle(handle)
    else:
        await harness.standin.callback(handle)
    return handle


async def test_info_lists_my_waiting_and_finished_jobs_with_links_and_my_allowance(
    harness: Harness, executor: FakeExecutor
) -> None:
    done = await imagine(harness, ALICE, prompt="a red fox", seed="42")
    await imagine(harness, BOB, prompt="bob's own cat")
    executor.paused = True
    waiting = await harness.standin.slash("imagine", ALICE, prompt="a blue owl")
    await harness.standin.wait_for(lambda r: r.is_for(waiting) and "Queued" in str(r.json))
    text = await info(harness)
    done_id, message_id = job_id_of(harness.standin, done), harness.standin.original(done)["id"]
    assert "1 of your 3 places in use" in text
    assert f"`{job_id_of(harness.standin, waiting)}` a blue owl" in text and "running" in text
    [line] = [line for line in text.splitlines() if done_id in line]
    assert "a red fox" in line and "`builtin:tiny`" in line and "seed 42" in line and "✅ done" in line
    assert f"(https://discord.com/channels/{GUILD_ID}/{CHANNEL_ID}/{message_id})" in line
    assert "bob's own cat" not in text
    executor.cancel(job_id_of(harness.standin, waiting))


async def test_info_without_jobs_points_to_imagine(harness: Harness) -> None:
    assert "try `/imagine`" in await info(harness)


async def test_show_reposts_a_finished_job_regenerated_with_the_same_seed_and_working_buttons(
    harness: Harness, executor: FakeExecutor
) -> None:
    first = await imagine(harness, ALICE, prompt="a red fox", seed="42")
    original = job_id_of(harness.standin, first)
    shown = await show(harness, original.upper() + " ")  # pasted ids are forgiven case and spaces
    assert callback_of(harness.standin, shown)["type"] == 5  # a public "thinking" reply: a new message
    again = executor.submitted[-1]
    assert again.params == executor.submitted[0].params and again.user_id == str(BOB.id)
    message = harness.standin.original(shown)
    assert f"Job {original} regenerated from its parameters" in message["content"]
    assert "Seed: 42" in message["content"]
    assert message["attachments"] and harness.standin.sent(shown, "PATCH")[-1].files[0].data.startswith(PNG_MAGIC)
    assert [c.split(":")[1] for c in custom_ids(message)][:7] == [
        "reroll",
        "vary",
        "edit",
        "delete",
        "fixfaces",
        "subtle",
        "upscale",
    ]
    await click(harness, shown, "vary", BOB)
    assert executor.submitted[-1].params.seed == 42 and executor.submitted[-1].params.subseed_strength > 0


async def test_show_of_an_unknown_job_is_an_ephemeral_error(harness: Harness, executor: FakeExecutor) -> None:
    handle = await show(harness, "0badc0ffee00")
    assert_ephemeral(harness.standin, handle, "There is no job `0badc0ffee00`", "/info")
    assert executor.submitted == []


async def test_show_refuses_a_job_that_has_not_finished(harness: Harness, executor: FakeExecutor) -> None:
    executor.paused = True
    waiting = await harness.standin.slash("imagine", ALICE, prompt="a blue owl")
    await harness.standin.wait_for(lambda r: r.is_for(waiting) and "Queued" in str(r.json))
    handle = await show(harness, executor.submitted[0].job_id, settle=False)
    assert_ephemeral(harness.standin, handle, "has not finished yet")
    assert len(executor.submitted) == 1
    executor.cancel(executor.submitted[0].job_id)


async def test_show_refuses_a_job_made_in_another_server(harness: Harness, executor: FakeExecutor) -> None:
    first = await imagine(harness, ALICE, prompt="a red fox")
    assert harness.store is not None
    record = harness.store.get_job(job_id_of(harness.standin, first))
    assert record is not None
    harness.store.add_job("abcdef012345", user_id=ALICE.id, guild_id=GUILD_ID + 1, channel_id=1, params=record.params)
    harness.store.set_status("abcdef012345", JobStatus.FINISHED)
    handle = await show(harness, "abcdef012345", ALICE)
    assert_ephemeral(harness.standin, handle, "not made in this server")
    assert len(executor.submitted) == 1


async def test_show_autocompletes_my_own_finished_jobs(harness: Harness) -> None:
    mine = job_id_of(harness.standin, await imagine(harness, ALICE, prompt="a red fox"))
    other = job_id_of(harness.standin, await imagine(harness, ALICE, prompt="a green frog"))
    await imagine(harness, BOB, prompt="a red car")
    handle = await harness.standin.autocomplete("show", ALICE, "job_id", job_id="RED")
    body = (await harness.standin.callback(handle)).json
    assert body["type"] == 8
    assert [(c["value"], c["name"]) for c in body["data"]["choices"]] == [(mine, f"{mine} · a red fox")]
    handle = await harness.standin.autocomplete("show", ALICE, "job_id", job_id="")
    values = [c["value"] for c in (await harness.standin.callback(handle)).json["data"]["choices"]]
    assert values == [other, mine]
