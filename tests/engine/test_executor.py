"""The GPU executor: limits, fairness, talkative positions, cancellation, and isolation of failing jobs."""

from __future__ import annotations

import asyncio
import io
import random
import threading
import time
from collections.abc import AsyncIterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from engine.errors import Cancelled, EaselError, GenerationFailedError, OutOfMemoryError, QueueFullError
from engine.executor import GpuExecutor, fair_order, resident_models
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
from engine.pipeline import CancelledFn, JobHooks, ProgressFn, RawImage
from engine.plan import GenerationPlan
from engine.previews import PreviewFn
from tests.engine.conftest import tiny_params
from tests.waiting import wait_until


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
        self.loaded: list[str] = []  # the model of the last job, as a real engine keeps it resident
        self.together: threading.Barrier | None = None  # when set: a job starts only alongside another worker's

    def loaded_names(self) -> list[str]:
        return list(self.loaded)

    def render(self) -> Image.Image:
        self.renders += 1
        return Image.new("RGB", (8, 8), (200, 30, 30))

    def generate(
        self,
        plan: GenerationPlan,
        *,
        on_step: ProgressFn | None = None,
        is_cancelled: CancelledFn | None = None,
        on_preview: PreviewFn | None = None,
    ) -> list[RawImage]:
        params = plan.params
        if params.prompt == "boom":
            raise RuntimeError("CUDA exploded")
        if self.together is not None:
            self.together.wait(5)
        self.preview_offered = on_preview is not None
        for step in range(1, params.steps + 1):
            deadline = time.monotonic() + 5
            while not self.gate.wait(0.005) and time.monotonic() < deadline:
                if is_cancelled is not None and is_cancelled():
                    raise Cancelled("cancelled")
            time.sleep(self.step_seconds)
            if is_cancelled is not None and is_cancelled():
                raise Cancelled("cancelled")
            if on_step is not None:
                on_step(step, params.steps)
            if on_preview is not None:
                self.offers += 1
                on_preview(step, params.steps, self)
        self.ran.append(params.prompt)
        self.loaded = [params.model]
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
    with pytest.raises(QueueFullError, match="limit here is 3"):
        await executor.submit(job("j3"))
    await executor.submit(job("other", user="u2"))  # another user is not affected


async def test_a_lower_per_job_cap_wins_and_says_when_a_slot_frees(timed: tuple[TimedEngine, GpuExecutor]) -> None:
    """A channel's queue ceiling travels with the job; the refusal says when the user's first job is done."""
    engine, executor = timed
    try:
        await asyncio.wait_for(collect((await executor.submit(job("warm", "u1"))).events), 5)  # 10 s is known now
        engine.gate.clear()
        await executor.submit(Job("a", "u1", tiny_params(), max_queued=1))
        with pytest.raises(QueueFullError, match=r"limit here is 1\); a slot frees when one of them finishes, in abo"):
            await executor.submit(Job("b", "u1", tiny_params(), max_queued=1))
        await executor.submit(Job("c", "u1", tiny_params(), max_queued=5))  # the executor's own 3 still holds
        await executor.submit(Job("d", "u1", tiny_params()))
        with pytest.raises(QueueFullError, match="limit here is 3"):
            await executor.submit(Job("e", "u1", tiny_params(), max_queued=5))
        engine.gate.set()
    finally:
        await executor.close()


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


def reference_fair_order(pending: list[tuple[str, int]], last_served: dict[str, int]) -> list[int]:
    """The rule as first written: pick the least recently served user's oldest job, mark them served, repeat
    (quadratic: 10 ms for 500 jobs, at every submit)."""
    served = dict(last_served)
    remaining = sorted(pending, key=lambda p: p[1])
    order: list[int] = []
    clock = max(served.values(), default=0)
    while remaining:
        best = min(remaining, key=lambda p: (served.get(p[0], -1), p[1]))
        remaining.remove(best)
        order.append(best[1])
        clock += 1
        served[best[0]] = clock
    return order


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    users=st.lists(st.sampled_from("abcdefg"), max_size=40),
    served=st.dictionaries(st.sampled_from("abcdefgh"), st.integers(0, 50), max_size=8),
)
def test_fair_order_equals_the_pick_by_pick_rule(users: list[str], served: dict[str, int]) -> None:
    seqs = random.Random(len(users)).sample(range(1000), len(users))
    pending = [(user, seq) for seq, user in zip(seqs, users, strict=True)]
    assert fair_order(pending, served) == reference_fair_order(pending, served)


async def test_positions_are_announced_and_a_second_user_overtakes_a_backlog(
    gated: tuple[GpuExecutor, GatedEngine],
) -> None:
    executor, engine = gated
    engine.gate.clear()
    first = await executor.submit(job("a1", "alice"))
    await wait_until(lambda: executor.position("a1") == 0, what="a1 to run")
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
    await wait_until(lambda: executor.position("a") == 0, what="a to run")
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


# -- several workers, model affinity, ETA ------------------------------------------------------------------------


@pytest.fixture
async def two_workers() -> AsyncIterator[tuple[GpuExecutor, GatedEngine, GatedEngine]]:
    first, second = GatedEngine(), GatedEngine()
    executor = GpuExecutor([first, second], max_queued_per_user=3, max_queued_total=6, encode=fake_encode, name="two")
    await executor.start()
    yield executor, first, second
    first.gate.set()
    second.gate.set()
    await executor.close()


async def test_two_workers_run_two_jobs_at_once(two_workers: tuple[GpuExecutor, GatedEngine, GatedEngine]) -> None:
    executor, first, second = two_workers
    first.together = second.together = threading.Barrier(2)  # a lone job would wait 5 s and break it
    a = await executor.submit(job("a", "alice"))
    b = await executor.submit(job("b", "bob"))
    events = await asyncio.wait_for(asyncio.gather(collect(a.events), collect(b.events)), 5)
    assert all(isinstance(e[-1], Finished) for e in events)
    assert len(first.ran) == len(second.ran) == 1


async def test_a_running_job_on_any_worker_has_position_zero(
    two_workers: tuple[GpuExecutor, GatedEngine, GatedEngine],
) -> None:
    executor, first, second = two_workers
    first.gate.clear()
    second.gate.clear()
    await executor.submit(job("a", "alice"))
    await executor.submit(job("b", "bob"))
    await executor.submit(job("c", "carol"))
    await wait_until(lambda: executor.position("b") == 0, what="both workers to take a job")
    assert (executor.position("a"), executor.position("b"), executor.position("c")) == (0, 0, 1)


async def test_a_crash_on_one_worker_leaves_both_workers_running(
    two_workers: tuple[GpuExecutor, GatedEngine, GatedEngine],
) -> None:
    executor, first, second = two_workers
    bad = await executor.submit(job("bad", "alice", prompt="boom"))
    good = await executor.submit(job("good", "bob"))
    assert isinstance((await asyncio.wait_for(collect(bad.events), 5))[-1], Failed)
    assert isinstance((await asyncio.wait_for(collect(good.events), 5))[-1], Finished)
    first.together = second.together = threading.Barrier(2)  # only both workers together can finish these
    later = [await executor.submit(job(f"later{i}", f"user{i}")) for i in range(2)]
    events = await asyncio.wait_for(asyncio.gather(*(collect(t.events) for t in later)), 5)
    assert all(isinstance(e[-1], Finished) for e in events)


async def test_close_stops_every_worker_and_cancels_their_jobs() -> None:
    engines = [GatedEngine(), GatedEngine()]
    executor = GpuExecutor(engines, max_queued_per_user=3, max_queued_total=6, encode=fake_encode, name="closing")
    await executor.start()
    for engine in engines:
        engine.gate.clear()
    tickets = [await executor.submit(job(f"j{i}", f"user{i}", steps=50)) for i in range(2)]
    await wait_until(lambda: executor.position("j1") == 0, what="both jobs to run")
    await asyncio.wait_for(executor.close(), 5)
    for engine in engines:
        engine.gate.set()
    assert not [t for t in threading.enumerate() if t.name.startswith("easel-worker-closing")]
    for ticket in tickets:
        assert isinstance((await asyncio.wait_for(collect(ticket.events), 5))[-1], WasCancelled)


async def test_a_free_worker_prefers_a_job_for_the_model_it_has_loaded(
    gated: tuple[GpuExecutor, GatedEngine],
) -> None:
    executor, engine = gated
    engine.gate.clear()
    first = await executor.submit(job("first", "u0", prompt="first", model="m2"))
    await wait_until(lambda: executor.position("first") == 0, what="the first job to run")
    other = await executor.submit(job("other", "u1", prompt="other model", model="m1"))
    same = await executor.submit(job("same", "u2", prompt="same model", model="m2"))
    assert executor.position("other") == 1  # the fair order alone would run it first
    engine.gate.set()
    for ticket in (first, other, same):
        await asyncio.wait_for(collect(ticket.events), 5)
    assert engine.ran == ["first", "same model", "other model"]


def test_the_models_an_engine_holds_are_read_from_it_or_its_loader() -> None:
    class Loader:
        def loaded_names(self) -> list[str]:
            return ["m1"]

    class WithLoader:
        loader = Loader()

    assert resident_models(WithLoader()) == ["m1"]
    assert resident_models(object()) == []


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TimedEngine(GatedEngine):
    """Each job takes `seconds` on the fake clock."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        super().__init__()
        self.clock = clock
        self.seconds = seconds

    def generate(
        self,
        plan: GenerationPlan,
        *,
        on_step: ProgressFn | None = None,
        is_cancelled: CancelledFn | None = None,
        on_preview: PreviewFn | None = None,
    ) -> list[RawImage]:
        raws = super().generate(plan, on_step=on_step, is_cancelled=is_cancelled, on_preview=on_preview)
        self.clock.now += self.seconds
        return raws


@pytest.fixture
async def timed() -> tuple[TimedEngine, GpuExecutor]:
    """A started executor whose engine takes 10 s a job on a fake clock (the test closes it)."""
    clock = FakeClock()
    engine = TimedEngine(clock, seconds=10.0)
    executor = GpuExecutor(engine, max_queued_per_user=3, max_queued_total=5, encode=fake_encode, clock=clock)
    await executor.start()
    return engine, executor


async def test_queued_events_carry_an_eta_from_the_jobs_ahead(timed: tuple[TimedEngine, GpuExecutor]) -> None:
    engine, executor = timed
    try:
        first = await asyncio.wait_for(collect((await executor.submit(job("a", "u1"))).events), 5)
        assert [e.eta_seconds for e in first if isinstance(e, Queued)] == [None]  # nothing known yet
        assert isinstance(first[-1], Finished) and first[-1].result.seconds == 10.0
        engine.gate.clear()
        tickets = [await executor.submit(job(j, user)) for j, user in (("b", "u2"), ("c", "u3"), ("d", "u4"))]
        engine.gate.set()
        last = await asyncio.wait_for(collect(tickets[2].events), 5)
    finally:
        await executor.close()
    etas = [e.eta_seconds for e in last if isinstance(e, Queued)]
    # b (10 s, running or next) and c (10 s) run first, then d's own 10 s; once b is done, 20 s.
    assert etas[0] == pytest.approx(30.0)
    assert etas[-1] == pytest.approx(20.0)


class BatchingEngine(GatedEngine):
    """A gated engine that can also run batches, and records which jobs ran together."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []
        self.batch_gate = threading.Event()  # holds batches (not single jobs) while cleared
        self.batch_gate.set()

    def generate_batch(
        self, plans: Sequence[GenerationPlan], hooks: Sequence[JobHooks]
    ) -> list[list[RawImage] | EaselError]:
        self.batches.append([plan.params.prompt for plan in plans])
        steps = plans[0].params.steps
        for step in range(1, steps + 1):
            self.batch_gate.wait(5)
            for hook in hooks:
                if hook.on_step is not None:
                    hook.on_step(step, steps)
        outcomes: list[list[RawImage] | EaselError] = []
        for plan, hook in zip(plans, hooks, strict=True):
            if hook.is_cancelled is not None and hook.is_cancelled():
                outcomes.append(Cancelled("cancelled"))
            else:
                outcomes.append([RawImage(Image.new("RGB", (8, 8)), plan.params.seed, plan.params.prompt)])
        return outcomes


@pytest.fixture
async def batching() -> AsyncIterator[tuple[GpuExecutor, BatchingEngine]]:
    engine = BatchingEngine()
    executor = GpuExecutor(engine, max_queued_per_user=3, max_queued_total=10, encode=fake_encode, max_batch_images=4)
    await executor.start()
    yield executor, engine
    engine.gate.set()
    await executor.close()


async def test_compatible_waiting_jobs_of_several_users_run_as_one_batch(
    batching: tuple[GpuExecutor, BatchingEngine],
) -> None:
    executor, engine = batching
    engine.gate.clear()
    first = await executor.submit(job("first", "u0", prompt="first"))
    await wait_until(lambda: executor.position("first") == 0, what="the first job to run")
    tickets = [
        await executor.submit(job("a", "u1", prompt="a")),
        await executor.submit(job("other-size", "u2", prompt="other size", width=96)),
        await executor.submit(job("b", "u3", prompt="b", seed=9)),
    ]
    engine.gate.set()
    results = [await asyncio.wait_for(collect(t.events), 5) for t in [first, *tickets]]
    assert engine.batches == [["a", "b"]]  # a batch of one runs the plain way; never an incompatible job in a batch
    assert engine.ran == ["first", "other size"]
    finished = [events[-1] for events in results]
    assert all(isinstance(event, Finished) for event in finished)
    texts = [e.result.infotext.split("\n")[0] for e in finished if isinstance(e, Finished)]
    assert texts == ["first", "a", "other size", "b"]  # each job gets exactly its own images


async def test_a_batch_never_waits_for_jobs_that_have_not_arrived(batching: tuple[GpuExecutor, BatchingEngine]) -> None:
    executor, engine = batching
    events = await asyncio.wait_for(collect((await executor.submit(job("alone", prompt="alone"))).events), 5)
    assert isinstance(events[-1], Finished) and engine.batches == [] and engine.ran == ["alone"]


async def test_cancelling_one_job_of_a_batch_ends_it_at_once_and_the_others_finish(
    batching: tuple[GpuExecutor, BatchingEngine],
) -> None:
    executor, engine = batching
    engine.gate.clear()
    engine.batch_gate.clear()
    busy = await executor.submit(job("busy", "u0", prompt="busy"))
    await wait_until(lambda: executor.position("busy") == 0, what="the busy job to run")
    a = await executor.submit(job("a", "u1", prompt="a", steps=50))
    b = await executor.submit(job("b", "u2", prompt="b", steps=50))
    engine.gate.set()
    await wait_until(lambda: executor.position("a") == 0 and executor.position("b") == 0, what="a and b to run")
    assert executor.cancel("a")
    cancelled = await asyncio.wait_for(collect(a.events), 5)  # at once, while the batch is held
    assert isinstance(cancelled[-1], WasCancelled)
    engine.batch_gate.set()
    assert isinstance((await asyncio.wait_for(collect(b.events), 5))[-1], Finished)
    await asyncio.wait_for(collect(busy.events), 5)
    assert ["a", "b"] in engine.batches


async def test_batching_off_runs_every_job_alone() -> None:
    engine = BatchingEngine()
    executor = GpuExecutor(engine, max_queued_per_user=3, max_queued_total=10, encode=fake_encode, max_batch_images=1)
    await executor.start()
    try:
        engine.gate.clear()
        tickets = [await executor.submit(job(f"j{i}", f"u{i}", prompt=f"j{i}")) for i in range(3)]
        engine.gate.set()
        for ticket in tickets:
            await asyncio.wait_for(collect(ticket.events), 5)
    finally:
        await executor.close()
    assert engine.batches == []  # generate() each time: a batch of one is the plain path
    assert engine.ran == ["j0", "j1", "j2"]


class TightEngine(BatchingEngine):
    """A batching engine on a device where two jobs at once do not fit in memory, but one does."""

    def generate_batch(
        self, plans: Sequence[GenerationPlan], hooks: Sequence[JobHooks]
    ) -> list[list[RawImage] | EaselError]:
        self.batches.append([plan.params.prompt for plan in plans])
        raise OutOfMemoryError("The GPU ran out of memory making 2 image(s) at 64x64; a batch of 1 should fit.")


async def test_a_batch_that_runs_out_of_memory_runs_again_job_by_job_and_every_job_finishes() -> None:
    engine = TightEngine()
    executor = GpuExecutor(engine, max_queued_per_user=3, max_queued_total=10, encode=fake_encode, max_batch_images=4)
    await executor.start()
    try:
        engine.gate.clear()
        first = await executor.submit(job("first", "u0", prompt="first"))
        await wait_until(lambda: executor.position("first") == 0, what="the first job to run")
        a, b = [await executor.submit(job(name, f"u-{name}", prompt=name)) for name in ("a", "b")]
        engine.gate.set()
        events = [await asyncio.wait_for(collect(t.events), 5) for t in (first, a, b)]
    finally:
        await executor.close()
    assert engine.batches == [["a", "b"]] and engine.ran == ["first", "a", "b"]
    assert all(isinstance(e[-1], Finished) for e in events)


async def test_the_log_names_each_worker_by_its_device(caplog: pytest.LogCaptureFixture) -> None:
    engines = [GatedEngine(), GatedEngine()]
    for engine, device in zip(engines, ("cpu", "cuda:1"), strict=True):
        engine.device = device  # type: ignore[attr-defined]
    executor = GpuExecutor(engines, max_queued_per_user=5, max_queued_total=5)
    try:
        with caplog.at_level("INFO", logger="engine.executor"):
            await asyncio.wait_for(collect((await executor.submit(job("a"))).events), 5)
        started = [r.getMessage() for r in caplog.records if " started " in r.getMessage()]
        assert started and all(m.endswith(("on cpu", "on cuda:1")) for m in started)  # whichever worker took it
        assert not any("gpu0" in r.getMessage() or "gpu1" in r.getMessage() for r in caplog.records)
    finally:
        await executor.close()
