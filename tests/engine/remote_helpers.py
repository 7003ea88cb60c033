"""In-process GPU workers (a fake engine, a fake models folder) and a bot-side pool, all over a real redis-server:
the transport, the scheduling and the recovery are real; only the drawing is fake, so each test takes seconds."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from engine.blobs import BlobStore
from engine.errors import Cancelled, EaselError
from engine.executor import GpuExecutor
from engine.jobs import TERMINAL_EVENTS, Job, JobEvent, Ticket
from engine.params import GenerationParams
from engine.pipeline import CancelledFn, JobHooks, ProgressFn, RawImage
from engine.plan import GenerationPlan, make_plan
from engine.previews import PreviewFn
from engine.remote.pool import RemotePool
from engine.remote.transport import connect
from engine.remote.worker import RemoteWorker
from tests.engine.conftest import tiny_params
from tests.waiting import wait_until


class StepEngine:
    """Runs `steps` steps of `step_seconds` each, honouring cancel between steps; images at the job's size."""

    def __init__(self, step_seconds: float = 0.01) -> None:
        self.step_seconds = step_seconds
        self.ran: list[str] = []  # job prompts, in the order they finished
        self.steps_done: dict[str, int] = {}
        self.loaded: list[str] = []
        self.gate = threading.Event()
        self.gate.set()

    def loaded_names(self) -> list[str]:
        return list(self.loaded)

    def render(self) -> Image.Image:
        return Image.new("RGB", (512, 512), (200, 30, 30))  # a preview source: encode_preview shrinks it

    def generate(
        self,
        plan: GenerationPlan,
        *,
        on_step: ProgressFn | None = None,
        is_cancelled: CancelledFn | None = None,
        on_preview: PreviewFn | None = None,
    ) -> list[RawImage]:
        params = plan.params
        for step in range(1, params.steps + 1):
            while not self.gate.wait(0.01):
                if is_cancelled is not None and is_cancelled():
                    raise Cancelled("cancelled")
            time.sleep(self.step_seconds)
            if is_cancelled is not None and is_cancelled():
                raise Cancelled("cancelled")
            self.steps_done[params.prompt] = step
            if on_step is not None:
                on_step(step, params.steps)
            if on_preview is not None:
                on_preview(step, params.steps, self)
        self.ran.append(params.prompt)
        self.loaded = [params.model]
        return [
            RawImage(
                Image.new("RGB", (plan.width, plan.height)), params.seed + i, f"{params.prompt}\nSeed: {params.seed}"
            )
            for i in range(params.batch_size)
        ]


class BatchStepEngine(StepEngine):
    """Also runs compatible jobs as one batch (as DiffusersEngine does), recording each batch's prompts."""

    def __init__(self, step_seconds: float = 0.01) -> None:
        super().__init__(step_seconds)
        self.batches: list[list[str]] = []

    def generate_batch(
        self, plans: Sequence[GenerationPlan], hooks: Sequence[JobHooks]
    ) -> list[list[RawImage] | EaselError]:
        self.batches.append([p.params.prompt for p in plans])
        return [
            self.generate(p, on_step=h.on_step, is_cancelled=h.is_cancelled) for p, h in zip(plans, hooks, strict=True)
        ]


@dataclass
class Entry:
    name: str
    hash: str | None
    kind: str = "single-file"
    family: str = "sd1"
    latent_scale: int = 8
    context_width: int | None = None
    usable: bool = True


class ModelsFolder:
    """What a worker's registry says of its models folder: names and hashes."""

    def __init__(self, models: dict[str, str | None], *, cached: bool = True) -> None:
        self.models = [Entry(name, digest) for name, digest in models.items()]
        self.cached = cached  # whether the hashes are known before hashing (a folder hashed on an earlier start)
        self.hashed: list[str] = []

    def entries(self) -> list[Entry]:
        return self.models

    def model_hash(self, entry: Entry) -> str | None:
        self.hashed.append(entry.name)
        return entry.hash

    def known_hash(self, name: str) -> str | None:
        return next((e.hash for e in self.models if e.name == name), None) if self.cached else None


@dataclass
class Running:
    worker: RemoteWorker
    engine: StepEngine
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def started(self, prompt: str | None = None, steps: int = 1) -> None:
        """Until this worker has drawn `steps` steps of the job with `prompt` (any job, when None)."""
        done = self.engine.steps_done
        await wait_until(
            lambda: (max(done.values(), default=0) if prompt is None else done.get(prompt, 0)) >= steps,
            limit_s=30,
            what=f"{prompt or 'a job'!r} to start on {self.worker.name}",
        )

    async def shut(self) -> None:
        """A graceful stop (SIGTERM): running jobs are given back."""
        self.stop.set()
        await asyncio.wait_for(self.task, 20)

    async def die(self) -> None:
        """As kill -9: everything stops at once; nothing is given back, no heartbeat ever again."""
        self.task.cancel()
        for task in asyncio.all_tasks():
            if task.get_name().startswith(f"easel-worker-{self.worker.boot}-"):
                task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        self.worker.executor._closing = True  # its thread stops after the step it is in; its result goes nowhere
        for w in self.worker.executor._workers:
            for e in w.running:
                e.cancel_requested.set()


async def start_worker(
    url: str,
    name: str,
    models: dict[str, str | None],
    *,
    step_seconds: float = 0.01,
    heartbeat: float = 0.3,
    max_images: int = 4,
    batches: bool = False,
    preview_interval: float | None = None,
    blobs: BlobStore | None = None,
    cached: bool = True,
    joins: RemotePool | None = None,
    planner: Callable[[GenerationParams], GenerationPlan] = make_plan,
) -> Running:
    """A worker on the fake engine, running; `joins`: wait until that pool has heard it."""
    engine = BatchStepEngine(step_seconds) if batches else StepEngine(step_seconds)
    executor = GpuExecutor(
        [engine],
        max_queued_per_user=256,
        max_queued_total=256,
        preview_interval=preview_interval,
        planner=planner,
        max_batch_images=max_images,
    )
    worker = RemoteWorker(
        connect(url),
        executor,
        ModelsFolder(models, cached=cached),  # type: ignore[arg-type]
        name=name,
        devices=["cpu"],
        max_images=max_images,
        heartbeat=heartbeat,
        memory=lambda: 1 << 30,
        blobs=blobs,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop), name=f"easel-worker-main-{name}")
    if joins is not None:
        await wait_until(lambda: any(h.boot == worker.boot for h in joins.workers()), what=f"{name} to connect")
    return Running(worker, engine, stop, task)


async def started_pool(url: str, **options: Any) -> RemotePool:
    """The bot's side, started (it has read the workers' latest heartbeats); a short timeout unless told."""
    options.setdefault("timeout", 1.5)
    pool = RemotePool(
        connect(url),
        planner=make_plan,
        max_queued_per_user=options.pop("max_queued_per_user", 20),
        max_queued_total=options.pop("max_queued_total", 200),
        **options,
    )
    await pool.start()
    return pool


@dataclass
class Outcome:
    events: list[JobEvent] = field(default_factory=list)

    @property
    def last(self) -> JobEvent:
        return self.events[-1]


async def collect(ticket: Ticket, outcome: Outcome) -> None:
    async for event in ticket.events:
        outcome.events.append(event)


async def following(executor: RemotePool, submitted: Job) -> tuple[Outcome, asyncio.Task[None]]:
    """Submit a job and collect its events in the background: its outcome, and the task to await for its end."""
    outcome = Outcome()
    return outcome, asyncio.create_task(collect(await executor.submit(submitted), outcome))


def job(job_id: str, prompt: str, *, user: str = "1", model: str = "alpha", **changes: Any) -> Job:
    return Job(job_id, user, tiny_params(prompt=prompt, model=model, **changes))


async def run_all(tickets: list[Ticket], limit_s: float = 60) -> list[Outcome]:
    outcomes = [Outcome() for _ in tickets]
    await asyncio.wait_for(asyncio.gather(*(collect(t, o) for t, o in zip(tickets, outcomes, strict=True))), limit_s)
    for outcome in outcomes:
        assert isinstance(outcome.last, TERMINAL_EVENTS)
    return outcomes


async def until_workers(pool: RemotePool, count: int, limit_s: float = 30) -> None:
    await asyncio.wait_for(pool.wait_for_workers(count), limit_s)


async def events_of(ticket: Ticket) -> AsyncIterator[JobEvent]:
    async for event in ticket.events:
        yield event
