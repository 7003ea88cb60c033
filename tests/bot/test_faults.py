"""Discord failing under a job, through discord.py against the stand-in: rate limits, 5xx bursts, a gateway
outage with RESUME, a token that dies, a reply a moderator deletes, a channel the bot may not post or attach in;
and the disk filling up under the job store or the init images.

In every case the job finishes once, its requester is told (in the reply, the channel or a DM), and no message is
posted twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.store import JobStatus
from engine.errors import StorageFullError
from tests.bot.harness import ALICE, BOB, Harness, make_settings
from tests.bot.helpers import PNG_MAGIC, assert_ephemeral, edits
from tests.bot.spec import validation_errors
from tests.bot.standin import CHANNEL_ID, DM_CHANNEL_BASE, InteractionHandle, Json, Recorded, Standin, StandinUser
from tests.bot.test_img2img import assert_withdrawn
from tests.bot.test_store import fill
from tests.engine.test_blobs import DEV_FULL, full_disk_for
from tests.fakes import FakeExecutor, FakeRegistry, tiny_png

REPLY = r"/webhooks/\d+/[^/]+/messages/@original"
CHANNEL = rf"/channels/{CHANNEL_ID}/messages"
DM = rf"/channels/{str(DM_CHANNEL_BASE)[:3]}\d+/messages"


@pytest.fixture
async def expired(
    standin: Standin, executor: FakeExecutor, registry: FakeRegistry, tmp_path: Path
) -> AsyncIterator[Harness]:
    """A bot whose interaction tokens are dead on arrival: every job reports with a channel message, as one
    queued for more than 15 minutes does."""
    rig = Harness(standin, make_settings(standin, tmp_path), executor, registry, token_lifetime=timedelta(0))
    await rig.start()
    yield rig
    await rig.stop()
    assert_valid(standin)


def assert_valid(standin: Standin) -> None:
    problems = [problem for recorded in standin.requests for problem in validation_errors(recorded)]
    assert not problems, "\n".join(problems)


def about(standin: Standin, job_id: str) -> list[Json]:
    """Every message that exists now and is about the job (its footer or buttons name it)."""
    return [m for m in standin.messages.values() if job_id in json.dumps(m)]


def posts(standin: Standin, path: str) -> list[Recorded]:
    return [r for r in standin.requests if r.method == "POST" and r.path == path]


def assert_finished_once(harness: Harness, job_id: str) -> None:
    assert harness.store is not None
    record = harness.store.get_job(job_id)
    assert record is not None and record.status is JobStatus.FINISHED, record
    [message] = [m for m in about(harness.standin, job_id) if m["attachments"]]  # the result, once
    assert message["attachments"][0]["filename"].endswith(".png")


async def imagine(
    harness: Harness, user: StandinUser = ALICE, prompt: str = "a red fox", **options: object
) -> tuple[InteractionHandle, str]:
    """Run /imagine until the bot has answered it: the job is queued by then. Returns the handle and job id."""
    handle = await harness.standin.slash("imagine", user, prompt=prompt, **options)
    await harness.standin.callback(handle)
    assert isinstance(harness.executor, FakeExecutor)
    job = harness.executor.submitted[-1]
    assert job.user_id == str(user.id)
    return handle, job.job_id


# -- rate limits ------------------------------------------------------------------------------------------------


async def test_a_rate_limited_result_waits_retry_after_and_lands_once(harness: Harness) -> None:
    standin = harness.standin
    standin.rate_limit("PATCH", REPLY, 0.3, with_files=True)
    handle, job_id = await imagine(harness)
    await harness.settle()
    limited, landed = [r for r in edits(standin, handle) if r.files]
    assert (limited.status, landed.status) == (429, 200)
    assert landed.at - limited.at >= 0.3
    assert_finished_once(harness, job_id)
    assert standin.original(handle)["content"].startswith("Done")


async def test_a_global_rate_limit_holds_every_other_post_until_it_is_over(expired: Harness) -> None:
    standin = expired.standin
    fault = standin.rate_limit("POST", CHANNEL, 0.6, is_global=True)
    _, alice_job = await imagine(expired)
    [limited] = await standin.wait_for(lambda r: r.status == 429)
    _, bob_job = await imagine(expired, BOB)  # comes while the global limit lasts
    await expired.settle()
    assert fault.hits == 1
    later = [r for r in posts(standin, CHANNEL) if r.status == 200]
    assert len(later) == 2 and all(r.at - limited.at >= 0.55 for r in later)  # both waited out the limit
    assert_finished_once(expired, alice_job)
    assert_finished_once(expired, bob_job)


# -- 5xx --------------------------------------------------------------------------------------------------------


@pytest.mark.slow  # discord.py waits 1 s and 3 s before it retries a 500 and a 502
async def test_a_500_502_503_burst_delays_the_result_and_posts_it_once(expired: Harness) -> None:
    standin = expired.standin
    for status in (500, 502, 503):
        standin.fail("POST", CHANNEL, status)
    _, job_id = await imagine(expired)
    await expired.settle()
    assert [r.status for r in posts(standin, CHANNEL)] == [500, 502, 503, 200]
    assert_finished_once(expired, job_id)
    [message] = about(standin, job_id)
    assert message["content"].startswith(f"<@{ALICE.id}> Done")


@pytest.mark.slow  # discord.py itself waits about 10 s between its tries of a 503
async def test_a_post_whose_answer_was_lost_is_not_posted_twice(expired: Harness) -> None:
    """Discord created the message but answered 503: the runner sends it again with the same enforced nonce,
    and Discord answers with the message it has."""
    standin = expired.standin
    standin.fail("POST", CHANNEL, 503, after=True)
    standin.fail("POST", CHANNEL, 503)
    _, job_id = await imagine(expired)
    await expired.settle()
    sent = posts(standin, CHANNEL)
    assert [r.status for r in sent] == [503, 503, 200]
    assert len({r.json["nonce"] for r in sent}) == 1 and all(r.json["enforce_nonce"] for r in sent)
    assert_finished_once(expired, job_id)
    assert expired.store is not None
    record = expired.store.get_job(job_id)
    assert record is not None and str(record.message_id) == next(iter(about(standin, job_id)))["id"]


async def test_a_503_on_the_reply_is_tried_again(harness: Harness) -> None:
    standin = harness.standin
    standin.fail("PATCH", REPLY, 503, with_files=True)
    handle, job_id = await imagine(harness)
    await harness.settle()
    assert [r.status for r in edits(standin, handle) if r.files] == [503, 200]
    assert_finished_once(harness, job_id)
    assert posts(standin, CHANNEL) == []


@pytest.mark.slow  # as above
async def test_a_failed_job_is_still_reported_through_an_outage(expired: Harness) -> None:
    executor = expired.executor
    assert isinstance(executor, FakeExecutor)
    executor.fail_prompts.add("doomed")
    expired.standin.fail("POST", CHANNEL, 503, times=2)
    _, job_id = await imagine(expired, prompt="doomed")
    await expired.settle()
    [message] = about(expired.standin, job_id)
    assert message["content"].startswith(f"<@{ALICE.id}> ❌ Out of memory")
    assert expired.store is not None
    record = expired.store.get_job(job_id)
    assert record is not None and record.status is JobStatus.FAILED


# -- the gateway ------------------------------------------------------------------------------------------------


async def test_a_gateway_outage_mid_job_resumes_and_replays_what_was_missed(
    harness: Harness, executor: FakeExecutor
) -> None:
    standin = harness.standin
    executor.hold = asyncio.Event()
    _, alice_job = await imagine(harness)
    await standin.drop_gateway(hold_resume=True)
    bob = await standin.slash("imagine", BOB, prompt="sent while the bot was away")
    standin.resumes_allowed.set()
    await standin.callback(bob)  # the missed INTERACTION_CREATE came with the RESUME
    executor.hold.set()
    await harness.settle()
    ops = [payload["op"] for payload in standin.gateway_log]
    assert ops.count(2) == 1 and ops.count(6) == 1  # one IDENTIFY, then a RESUME, not a new session
    [resume] = [p for p in standin.gateway_log if p["op"] == 6]
    assert resume["d"]["session_id"] == "standin-session" and resume["d"]["seq"] >= 2
    assert_finished_once(harness, alice_job)
    assert_finished_once(harness, executor.submitted[-1].job_id)
    assert executor.submitted[-1].params.prompt == "sent while the bot was away"


# -- the reply goes away ----------------------------------------------------------------------------------------


async def test_a_token_that_dies_early_sends_the_result_to_the_channel(
    harness: Harness, executor: FakeExecutor
) -> None:
    standin = harness.standin
    executor.hold = asyncio.Event()
    handle, job_id = await imagine(harness)
    standin.expired_tokens.add(handle.token)  # Discord ended it before the 15 minutes the bot counts on
    executor.hold.set()
    await harness.settle()
    after_401 = [r.status for r in edits(standin, handle)]
    assert after_401[-1] == 401 and after_401.count(401) == 1  # nothing tried on a dead token again
    assert_finished_once(harness, job_id)
    [post] = posts(standin, CHANNEL)
    assert post.json["content"].startswith(f"<@{ALICE.id}> Done") and post.files[0].data.startswith(PNG_MAGIC)


async def test_a_progress_message_deleted_by_a_moderator_is_replaced_by_a_channel_message(
    harness: Harness, executor: FakeExecutor
) -> None:
    standin = harness.standin
    executor.hold = asyncio.Event()
    handle, job_id = await imagine(harness, steps=5)
    await standin.delete_message(int(standin.original(handle)["id"]))
    executor.hold.set()
    await harness.settle()
    statuses = [r.status for r in edits(standin, handle)]
    assert statuses.count(404) == 1 and statuses[-1] == 404  # the first progress edit found it gone; no more
    assert_finished_once(harness, job_id)
    [message] = about(standin, job_id)
    assert message["content"].startswith(f"<@{ALICE.id}> Done")


# -- permissions ------------------------------------------------------------------------------------------------


async def test_no_permission_to_post_in_the_channel_sends_the_result_by_dm(expired: Harness) -> None:
    standin = expired.standin
    standin.fail("POST", CHANNEL, 403, code=50013, times=5)
    _, job_id = await imagine(expired)
    await expired.settle()
    [dm] = standin.dms(ALICE)
    assert dm["attachments"] and "I may not post in" in dm["content"] and job_id in dm["content"]
    assert dm["content"].startswith(f"<@{ALICE.id}> Done")
    assert len(posts(standin, CHANNEL)) == 1  # tried once; a 403 is not retried
    assert_finished_once(expired, job_id)


async def test_no_permission_to_attach_and_closed_dms_still_tell_the_requester(expired: Harness) -> None:
    standin = expired.standin
    standin.fail("POST", CHANNEL, 403, code=50013, with_files=True)
    standin.fail("POST", DM, 403, code=50007, message="Cannot send messages to this user")
    _, job_id = await imagine(expired)
    await expired.settle()
    assert standin.dms(ALICE) == []
    [message] = about(standin, job_id)
    assert message["channel_id"] == str(CHANNEL_ID) and not message["attachments"]
    assert message["content"].startswith(f"<@{ALICE.id}> Done") and "Attach Files" in message["content"]
    assert expired.store is not None
    record = expired.store.get_job(job_id)
    assert record is not None and record.status is JobStatus.FINISHED


# -- a full disk ------------------------------------------------------------------------------------------------


async def test_a_full_job_store_refuses_a_new_job_clearly_and_queues_nothing(
    harness: Harness, executor: FakeExecutor
) -> None:
    assert harness.store is not None
    fill(harness.store)
    long = "a red fox, " * 360  # with the negative prompt, a row past a page: it needs a page the disk lacks
    handle = await harness.standin.slash("imagine", ALICE, prompt=long, negative_prompt=long)
    await harness.settle(handle)
    assert_ephemeral(harness.standin, handle, "disk is full")
    [job] = executor.submitted
    assert job.job_id in executor.cancelled  # taken back from the queue: a job the store lacks would be lost
    assert harness.store.get_job(job.job_id) is None


async def test_a_store_that_fills_up_mid_job_still_delivers_the_result(
    harness: Harness, executor: FakeExecutor, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The status updates of a job under way rewrite a row in place, which a full SQLite file usually still
    takes: the store's error is raised for them here, as it is when the disk has no byte left."""
    assert harness.store is not None
    executor.hold = asyncio.Event()
    handle, job_id = await imagine(harness)
    await harness.standin.wait_for(lambda r: r.is_for(handle) and "Starting" in str(r.json))

    def full(*args: object, **kwargs: object) -> None:
        raise StorageFullError("Easel's disk is full")

    monkeypatch.setattr(harness.store, "set_status", full)
    monkeypatch.setattr(harness.store, "set_message", full)
    executor.hold.set()
    await harness.settle()
    assert harness.standin.original(handle)["content"].startswith("Done")  # not replaced by an error
    assert len([m for m in about(harness.standin, job_id) if m["attachments"]]) == 1
    record = harness.store.get_job(job_id)
    assert record is not None and record.status is JobStatus.RUNNING  # its last state, whole
    assert "could not record its progress" in caplog.text


@pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full (Linux)")
async def test_a_full_disk_while_storing_an_init_image_is_refused_clearly(
    harness: Harness, executor: FakeExecutor
) -> None:
    data = tiny_png(64, 64, seed=3)
    full_disk_for(harness.settings.data_dir / "blobs", data)
    upload = harness.standin.attachment("cat.png", data, width=64, height=64)
    handle = await harness.standin.slash("imagine", ALICE, prompt="a cat", init_image=upload)
    await harness.settle(handle)
    assert_withdrawn(harness.standin, handle, "disk is full")
    assert executor.submitted == []


async def test_a_command_whose_acknowledgement_fails_still_runs_and_reports_in_the_channel(
    harness: Harness, executor: FakeExecutor
) -> None:
    standin = harness.standin
    # After an outage Discord no longer knows the interaction: its acknowledgement is refused for good.
    standin.fail("POST", r"/interactions/\d+/[^/]+/callback", 404, code=10062, message="Unknown interaction")
    handle = await standin.slash("imagine", ALICE, prompt="a red fox")
    await standin.callback(handle)
    await harness.settle()
    [job] = executor.submitted
    assert_finished_once(harness, job.job_id)
    [message] = [m for m in about(standin, job.job_id) if m["attachments"]]
    assert message["content"].startswith(f"<@{ALICE.id}> Done")  # in the channel, to the requester


async def test_a_refusal_whose_interaction_was_lost_is_told_in_the_channel(
    harness: Harness, executor: FakeExecutor
) -> None:
    standin = harness.standin
    standin.fail("POST", r"/interactions/\d+/[^/]+/callback", 404, code=10062, message="Unknown interaction")
    handle = await standin.slash("imagine", ALICE, prompt="a red fox", steps=999)
    await standin.callback(handle)
    await harness.settle()
    assert executor.submitted == []
    [told] = [m for m in standin.messages.values() if "Steps must be between" in str(m.get("content"))]
    assert told["content"].startswith(f"<@{ALICE.id}> Steps must be between 1 and")
