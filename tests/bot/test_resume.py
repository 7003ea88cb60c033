"""Jobs left queued by one bot instance are queued again by the next one on the same data dir, and their results
are posted in the channel (the interaction token is gone)."""

from __future__ import annotations

from bot.resume import MAX_CRASHES, SAME_POINT_CRASHES, poison_reason
from bot.store import JobStatus, JobStore
from tests.bot.harness import ALICE, BOB, Harness
from tests.bot.helpers import PNG_MAGIC
from tests.bot.standin import CHANNEL_ID, InteractionHandle, Recorded, Standin, custom_ids
from tests.fakes import FakeEntry, FakeExecutor, FakeRegistry


def channel_posts(standin: Standin) -> list[Recorded]:
    return [r for r in standin.requests if r.method == "POST" and r.path == f"/channels/{CHANNEL_ID}/messages"]


async def wait_queued(harness: Harness, handle: InteractionHandle) -> None:
    await harness.standin.wait_for(lambda r: r.is_for(handle) and "Queued" in str(r.json))


async def queue_waiting(harness: Harness, executor: FakeExecutor, *prompts: str, **options: object) -> JobStore:
    """Queue jobs (alternately Alice's and Bob's) that never run; the store that holds them."""
    executor.paused = True
    users = [ALICE, BOB]
    for index, prompt in enumerate(prompts):
        await wait_queued(harness, await harness.standin.slash("imagine", users[index % 2], prompt=prompt, **options))
    assert harness.store is not None
    return harness.store


async def queue_and_restart(harness: Harness, executor: FakeExecutor, *prompts: str, **options: object) -> FakeExecutor:
    """Queue jobs that never run, then restart the bot with a fresh executor (what a process restart gives)."""
    await queue_waiting(harness, executor, *prompts, **options)
    fresh = FakeExecutor()
    harness.executor = fresh
    await harness.restart()
    await harness.settle()
    return fresh


async def test_a_job_queued_before_a_restart_is_finished_and_posted_by_the_next_instance(
    harness: Harness, executor: FakeExecutor
) -> None:
    fresh = await queue_and_restart(harness, executor, "a red fox")
    [before] = executor.submitted
    [after] = fresh.submitted
    assert (after.job_id, after.user_id, after.params) == (before.job_id, before.user_id, before.params)
    [post] = channel_posts(harness.standin)
    assert post.json["content"].startswith(f"<@{ALICE.id}> Done") and "a red fox" in post.json["content"]
    assert [str(u) for u in post.json["allowed_mentions"]["users"]] == [str(ALICE.id)]
    assert post.files[0].data.startswith(PNG_MAGIC)
    message = harness.standin.messages[max(harness.standin.messages)]
    assert [c.split(":")[2] for c in custom_ids(message)] == [before.job_id] * len(custom_ids(message))
    assert harness.store is not None
    record = harness.store.get_job(before.job_id)
    assert record is not None and record.status is JobStatus.FINISHED and record.message_id == int(message["id"])


async def test_open_jobs_are_queued_again_in_their_original_order(harness: Harness, executor: FakeExecutor) -> None:
    fresh = await queue_and_restart(harness, executor, "first", "second", "third")
    assert [job.params.prompt for job in fresh.submitted] == ["first", "second", "third"]
    prompts = ["first", "second", "third"]
    posts = [p.json["content"] for p in channel_posts(harness.standin)]
    assert [next(w for w in prompts if w in text) for text in posts] == prompts


async def test_a_job_whose_model_is_gone_is_not_queued_and_the_requester_is_told(
    harness: Harness, executor: FakeExecutor, registry: FakeRegistry
) -> None:
    await queue_waiting(harness, executor, "a red fox", model="anime-v3")
    registry.entries_ = [FakeEntry("builtin:tiny", "builtin")]
    harness.executor = fresh = FakeExecutor()
    await harness.restart()
    await harness.settle()
    assert fresh.submitted == []
    [post] = channel_posts(harness.standin)
    text = post.json["content"]
    assert text.startswith(f"<@{ALICE.id}> Easel restarted") and "No model called 'anime-v3'" in text
    assert post.json.get("components", []) == []
    assert harness.store is not None
    [job] = executor.submitted
    record = harness.store.get_job(job.job_id)
    assert record is not None and record.status is JobStatus.INTERRUPTED and record.error is not None


async def test_a_job_that_stops_easel_at_the_same_point_each_time_is_given_up(
    harness: Harness, executor: FakeExecutor
) -> None:
    store = await queue_waiting(harness, executor, "a red fox")
    for seconds in (2.1, 2.3, 2.2, 2.4)[:SAME_POINT_CRASHES]:
        store.mark_resumed(executor.submitted[0].job_id, cut_short=True, ran_for=seconds)
    harness.executor = fresh = FakeExecutor()
    await harness.restart()
    await harness.settle()
    assert fresh.submitted == []
    [post] = channel_posts(harness.standin)
    assert (
        f"Easel stopped {SAME_POINT_CRASHES} times in a row while it was running, each time about 2.2 s"
        in (post.json["content"])
    )


async def test_a_job_merely_running_when_easel_was_killed_at_random_points_runs_again(
    harness: Harness, executor: FakeExecutor
) -> None:
    store = await queue_waiting(harness, executor, "a red fox")
    for seconds in (0.3, 4.1, 1.7, 2.9, 0.9, 3.6):  # six kills that each caught it running, at other points
        store.mark_resumed(executor.submitted[0].job_id, cut_short=True, ran_for=seconds)
    harness.executor = fresh = FakeExecutor()
    await harness.restart()
    await harness.settle()
    [post] = channel_posts(harness.standin)
    assert post.json["content"].startswith(f"<@{ALICE.id}> Done") and len(fresh.submitted) == 1


def test_crashes_are_blamed_on_a_job_only_at_one_point_or_past_the_cap() -> None:
    assert poison_reason([1.0, 1.2, 1.1]) is None  # not enough yet
    assert poison_reason([5.0, 1.0, 1.2, 1.1, 1.3]) is not None  # the last four at one point
    assert poison_reason([1.0, 3.0, 1.2, 1.1]) is None
    assert poison_reason([None] * SAME_POINT_CRASHES) is not None  # cannot be told apart: one point
    assert poison_reason([float(n) for n in range(MAX_CRASHES)]) is not None


async def test_a_job_only_waiting_through_many_restarts_is_still_run(harness: Harness, executor: FakeExecutor) -> None:
    # Only a job that was running when the process died counts towards the limit: waiting kills nothing.
    fresh = await queue_and_restart(harness, executor, "a red fox")
    for _ in range(SAME_POINT_CRASHES + 1):
        fresh.paused = True
        fresh = FakeExecutor()
        harness.executor = fresh
        await harness.restart()
        await harness.settle()
    [post] = channel_posts(harness.standin)
    assert post.json["content"].startswith(f"<@{ALICE.id}> Done") and "a red fox" in post.json["content"]


async def test_a_result_delivered_just_before_a_crash_is_not_run_or_posted_again(
    harness: Harness, executor: FakeExecutor
) -> None:
    handle = await harness.standin.slash("imagine", ALICE, prompt="a red fox")
    await harness.settle(handle)
    [job] = executor.submitted
    assert harness.store is not None
    # The process died between the result reaching Discord and the store recording it.
    harness.store.set_status(job.job_id, JobStatus.RUNNING)
    harness.executor = fresh = FakeExecutor()
    await harness.restart()
    await harness.settle()
    assert fresh.submitted == [] and channel_posts(harness.standin) == []
    record = harness.store.get_job(job.job_id)
    assert record is not None and record.status is JobStatus.FINISHED
    assert record.message_id == int(harness.standin.original(handle)["id"])


async def test_a_job_whose_reply_shows_no_result_yet_is_run_again(harness: Harness, executor: FakeExecutor) -> None:
    executor.paused = True
    handle = await harness.standin.slash("imagine", ALICE, prompt="a red fox")
    await wait_queued(harness, handle)
    assert harness.store is not None
    [job] = executor.submitted
    record = harness.store.get_job(job.job_id)
    assert record is not None and record.message_id == int(harness.standin.original(handle)["id"])
    harness.executor = fresh = FakeExecutor()
    await harness.restart()
    await harness.settle()
    assert [j.job_id for j in fresh.submitted] == [job.job_id]
    assert len(channel_posts(harness.standin)) == 1


async def test_a_job_asked_for_while_the_bot_starts_is_not_taken_for_one_left_open(
    harness: Harness, executor: FakeExecutor
) -> None:
    # Under load a command can arrive before the resume runs: only what the previous process left open (read at
    # start-up, before any command) is resumed, so this process's own queued job is neither refused nor ended.
    from bot.resume import resume_open_jobs

    store = await queue_waiting(harness, executor, "a red fox")
    assert harness.bot is not None
    assert await resume_open_jobs(harness.bot, left_open=[]) == 0
    record = store.get_job(executor.submitted[0].job_id)
    assert record is not None and record.status is JobStatus.QUEUED and channel_posts(harness.standin) == []
