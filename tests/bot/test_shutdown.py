"""A job running when the bot shuts down is not lost: main.py closes the bot, then the executor (which cancels the
running job); that cancellation is not the user's, so the job stays open and the next instance runs it."""

from __future__ import annotations

import asyncio

from bot.store import JobStatus
from tests.bot.harness import ALICE, Harness
from tests.bot.standin import CHANNEL_ID
from tests.fakes import FakeExecutor


async def start_running_job(harness: Harness, executor: FakeExecutor) -> str:
    executor.hold = asyncio.Event()  # the GPU stays busy with this job until the process stops
    handle = await harness.standin.slash("imagine", ALICE, prompt="a red fox")
    await harness.standin.wait_for(lambda r: r.is_for(handle) and "Starting" in str(r.json))
    [job] = executor.submitted
    assert harness.store is not None
    record = harness.store.get_job(job.job_id)
    assert record is not None and record.status is JobStatus.RUNNING
    return job.job_id


async def restart_with(harness: Harness, fresh: FakeExecutor) -> None:
    harness.executor = fresh
    await harness.start()
    await harness.settle()


async def test_a_job_running_at_shutdown_is_resumed_by_the_next_instance(
    harness: Harness, executor: FakeExecutor
) -> None:
    job_id = await start_running_job(harness, executor)
    await harness.stop()  # main.py's order: the bot first...
    await executor.close()  # ...then the executor, which cancels the running job (no follower is left to see it)
    fresh = FakeExecutor()
    await restart_with(harness, fresh)
    assert [job.job_id for job in fresh.submitted] == [job_id]
    assert harness.store is not None
    record = harness.store.get_job(job_id)
    assert record is not None and record.status is JobStatus.FINISHED and record.resumes == 1
    posts = [r for r in harness.standin.requests if r.method == "POST" and r.path == f"/channels/{CHANNEL_ID}/messages"]
    assert [p.json["content"].startswith(f"<@{ALICE.id}> Done") for p in posts] == [True]
    assert not any("Cancelled" in str(r.json) for r in harness.standin.requests)


async def test_a_job_cancelled_by_the_executor_closing_first_is_still_resumed(
    harness: Harness, executor: FakeExecutor
) -> None:
    job_id = await start_running_job(harness, executor)
    await executor.close()  # the other order: the executor stops while the bot still follows the job
    assert harness.bot is not None
    await harness.bot.runner.wait_idle()  # the follower has seen the cancellation, and left the job open
    await harness.stop()
    fresh = FakeExecutor()
    await restart_with(harness, fresh)
    assert [job.job_id for job in fresh.submitted] == [job_id]
    assert harness.store is not None
    record = harness.store.get_job(job_id)
    assert record is not None and record.status is JobStatus.FINISHED
