"""The GPU executor: limits, fairness, talkative positions, cancellation, and isolation of failing jobs."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import AsyncIterator

import pytest
from PIL import Image

from engine.errors import Cancelled, GenerationFailedError, QueueFullError
from engine.executor import GpuExecutor, fair_order
from engine.jobs import (
    Failed,
    Finished,
    GeneratedImage,
    Job,
    JobEvent,
    Progress,
    Queued,
    Started,
    WasCancelled,
)
from engine.params import GenerationParams
from engine.pipeline import CancelledFn, ProgressFn, RawImage
from engine.previews import PreviewFn
from tests.engine.conftest import tiny_params


class GatedEngine:
    """A fake engine whose jobs run step by step only while the test lets them (no torch involved)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.ran: list[str] = []
        self.step_seconds = 0.0
        self.renders = 0
        self.offers = 0
        self.preview_offered = False  # whether the executor asked for previews at all

    def render(self) -> Image.Image:
        self.renders += 1
        return Image.new("RGB", (8, 8), (200, 30, 30))

    def generate(
        self,
        params: GenerationParams,
        *,
        on_step: ProgressFn | None = None,
        is_cancelled: CancelledFn | None = None,
        on_preview: PreviewFn | None = None,
    ) -> list[RawImage]:
        if params.prompt == "boom":
            raise RuntimeError("CUDA exploded")
        self.preview_offered = on_preview is not None
        for step in range(1, params.steps + 1):
            self.gate.wait(5)
            time.sleep(self.step_seconds)
            if is_cancelled is not None and is_cancelled():
                raise Cancelled("cancelled")
            if on_step is not None:
                on_step(step, params.steps)
            if on_preview is not None:
                self.offers += 1
                on_preview(step, params.steps, self)
        self.ran.append(params.prompt)
        return [RawImage(Image.new("RGB", (8, 8)), params.seed, f"{params.prompt}\nSeed: {params.seed}")]


def fake_encode(raw: RawImage) -> GeneratedImage:
    return GeneratedImage(png=b"png", seed=raw.seed, infotext=raw.infotext, width=8, height=8)


@pytest.fixture
async def gated() -> AsyncIterator[tuple[GpuExecutor, GatedEngine]]:
    engine = GatedEngine()
    executor = GpuExecutor(engine, max_queued_per_user=3, max_queued_total=5, encode=fake_encode)
    await executor.start()
    yield executor, engine
    engine.gate.set()
    await executor.close()


def job(job_id: str, user: str = "u1", **changes: object) -> Job:
    return Job(job_id=job_id, user_id=user, params=tiny_params(**changes))


async def collect(events: AsyncIterator[JobEvent]) -> list[JobEvent]:
    return [event async for event in events]


async def test_a_job_reports_queued_started_progress_and_finished(
    gated: tuple[GpuExecutor, GatedEngine],
) -> None:
    executor, _ = gated
    events = await asyncio.wait_for(collect((await executor.submit(job("a"))).events), 5)
    kinds = [type(e) for e in events]
    assert kinds[0] is Queued and Started in kinds and kinds[-1] is Finished
    progress = [e for e in events if isinstance(e, Progress)]
    assert [(p.step, p.total) for p in progress] == [(1, 4), (2, 4), (3, 4), (4, 4)]


async def test_per_user_limit_refuses_clearly(gated: tuple[GpuExecutor, GatedEngine]) -> None:
    executor, engine = gated
    engine.gate.clear()
    for i in range(3):
        await executor.submit(job(f"j{i}"))
    with pytest.raises(QueueFullError, match="limit is 3"):
        await executor.submit(job("j3"))
    await executor.submit(job("other", user="u2"))  # another user is not affected


async def test_global_limit_refuses_clearly(gated: tuple[GpuExecutor, GatedEngine]) -> None:
    executor, engine = gated
    engine.gate.clear()
    for i in range(5):
        await executor.submit(job(f"j{i}", user=f"user{i}"))
    with pytest.raises(QueueFullError, match="queue is full"):
        await executor.submit(job("late", user="late-user"))


def test_fair_order_alternates_between_users() -> None:
    pending = [("alice", 1), ("alice", 2), ("alice", 3), ("bob", 4), ("carol", 5)]
    assert fair_order(pending, {}) == [1, 4, 5, 2, 3]


def test_fair_order_serves_the_least_recently_served_user_first() -> None:
    assert fair_order([("alice", 1), ("bob", 2)], {"alice": 10, "bob": 3}) == [2, 1]


async def test_positions_are_announced_and_a_second_user_overtakes_a_backlog(
    gated: tuple[GpuExecutor, GatedEngine],
) -> None:
    executor, engine = gated
    engine.gate.clear()
    first = await executor.submit(job("a1", "alice"))
    await asyncio.sleep(0.05)  # a1 is now running
    await executor.submit(job("a2", "alice"))
    await executor.submit(job("a3", "alice"))
    bob = await executor.submit(job("b1", "bob"))
    assert executor.position("a1") == 0
    assert executor.position("b1") == 1  # bob is served before alice's backlog
    assert executor.position("a3") == 3
    engine.gate.set()
    await asyncio.wait_for(collect(first.events), 5)
    events = await asyncio.wait_for(collect(bob.events), 5)
    assert any(isinstance(e, Queued) and e.position == 1 for e in events)
    assert engine.ran[:2] == ["a lighthouse at dusk"] * 2


async def test_cancel_queued_job(gated: tuple[GpuExecutor, GatedEngine]) -> None:
    executor, engine = gated
    engine.gate.clear()
    await executor.submit(job("a"))
    queued = await executor.submit(job("b"))
    assert executor.cancel("b")
    events = await asyncio.wait_for(collect(queued.events), 5)
    assert isinstance(events[-1], WasCancelled)
    assert executor.position("b") is None


async def test_cancel_running_job_and_the_next_one_still_runs(gated: tuple[GpuExecutor, GatedEngine]) -> None:
    executor, engine = gated
    engine.gate.clear()
    running = await executor.submit(job("a", steps=50))
    after = await executor.submit(job("b", user="u2"))
    await asyncio.sleep(0.05)
    assert executor.cancel("a")
    engine.gate.set()
    assert isinstance((await asyncio.wait_for(collect(running.events), 5))[-1], WasCancelled)
    assert isinstance((await asyncio.wait_for(collect(after.events), 5))[-1], Finished)


async def test_a_crashing_job_fails_alone(gated: tuple[GpuExecutor, GatedEngine]) -> None:
    executor, _ = gated
    bad = await executor.submit(job("bad", prompt="boom"))
    good = await executor.submit(job("good", user="u2"))
    bad_events = await asyncio.wait_for(collect(bad.events), 5)
    assert isinstance(bad_events[-1], Failed)
    assert isinstance(bad_events[-1].error, GenerationFailedError)
    assert "RuntimeError" in str(bad_events[-1].error) and "Traceback" not in str(bad_events[-1].error)
    assert isinstance((await asyncio.wait_for(collect(good.events), 5))[-1], Finished)


async def test_unknown_job_cannot_be_cancelled(gated: tuple[GpuExecutor, GatedEngine]) -> None:
    executor, _ = gated
    assert not executor.cancel("nope")
    assert executor.position("nope") is None


# -- previews -----------------------------------------------------------------------------------------------------


async def previewing(engine: GatedEngine, interval: float | None) -> GpuExecutor:
    executor = GpuExecutor(
        engine, max_queued_per_user=3, max_queued_total=5, encode=fake_encode, preview_interval=interval
    )
    await executor.start()
    return executor


async def test_progress_events_may_carry_small_jpeg_previews() -> None:
    engine = GatedEngine()
    executor = await previewing(engine, 0.0)
    try:
        events = await asyncio.wait_for(collect((await executor.submit(job("a", steps=6))).events), 5)
    finally:
        await executor.close()
    progress = [e for e in events if isinstance(e, Progress)]
    previews = [e.preview for e in progress if e.preview is not None]
    assert previews, "no preview reached the event stream"
    with Image.open(io.BytesIO(previews[0])) as image:
        assert image.format == "JPEG" and max(image.size) <= 256
    steps = [e.step for e in progress]
    assert steps == sorted(steps)  # a preview goes out with the latest step, never an older one
    assert isinstance(events[-1], Finished)


async def test_previews_are_throttled_to_the_interval() -> None:
    engine = GatedEngine()
    engine.step_seconds = 0.03
    executor = await previewing(engine, 0.1)
    try:
        started = time.perf_counter()
        await asyncio.wait_for(collect((await executor.submit(job("a", steps=10))).events), 5)
        elapsed = time.perf_counter() - started
    finally:
        await executor.close()
    assert engine.offers == 10
    assert 1 <= engine.renders <= elapsed / 0.1 + 1


async def test_no_preview_is_rendered_when_none_is_due() -> None:
    engine = GatedEngine()
    executor = await previewing(engine, 60.0)
    try:
        events = await asyncio.wait_for(collect((await executor.submit(job("a"))).events), 5)
    finally:
        await executor.close()
    assert engine.offers == 4 and engine.renders == 0
    assert all(e.preview is None for e in events if isinstance(e, Progress))


async def test_previews_off_means_the_engine_is_not_asked() -> None:
    engine = GatedEngine()
    executor = await previewing(engine, None)
    try:
        await asyncio.wait_for(collect((await executor.submit(job("a"))).events), 5)
    finally:
        await executor.close()
    assert not engine.preview_offered and engine.renders == 0


async def test_a_failing_preview_does_not_fail_the_job() -> None:
    class Broken(GatedEngine):
        def render(self) -> Image.Image:
            self.renders += 1
            raise RuntimeError("preview exploded")

    engine = Broken()
    executor = await previewing(engine, 0.0)
    try:
        events = await asyncio.wait_for(collect((await executor.submit(job("a"))).events), 5)
    finally:
        await executor.close()
    assert engine.renders >= 1 and isinstance(events[-1], Finished)
