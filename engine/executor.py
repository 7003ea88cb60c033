"""The asyncio-guarded GPU executor: a bounded, fair queue and one worker thread per device that owns torch.

The event loop only books jobs and forwards events; each device's worker thread runs the model, and encoder
threads turn images into PNG bytes (and previews into JPEG bytes) so encoding never delays the next job's denoising.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from PIL import Image

from engine.errors import (
    Cancelled,
    EaselError,
    GenerationFailedError,
    InvalidParamsError,
    OutOfMemoryError,
    QueueFullError,
)
from engine.images import encode_png
from engine.jobs import (
    Failed,
    Finished,
    GeneratedImage,
    Job,
    JobEvent,
    JobResult,
    Progress,
    Queued,
    Started,
    Ticket,
    WasCancelled,
    event_stream,
)
from engine.params import GenerationParams
from engine.pipeline import CancelledFn, JobHooks, ProgressFn, RawImage
from engine.plan import GenerationPlan, make_plan
from engine.previews import PreviewFn, PreviewSource, encode_preview
from engine.queue_policy import (
    NO_COST_LIMITS,
    CostLimits,
    RunTimes,
    admission_problem,
    fair_order,
    finish_times,
    job_cost_problem,
    user_cost_problem,
)
from engine.waiting import WaitingRoom

__all__ = [
    "PREVIEW_INTERVAL",
    "GpuExecutor",
    "ImageEngine",
    "encode_raw",
    "fair_order",
    "resident_models",
    "worker_devices",
]

log = logging.getLogger(__name__)

# Discord shows about one edit per 2 s; a preview more often than this would be made and never seen.
PREVIEW_INTERVAL = 1.5


class ImageEngine(Protocol):
    """What the worker thread drives; `DiffusersEngine` in production, a fake in tests."""

    def generate(
        self,
        plan: GenerationPlan,
        *,
        on_step: ProgressFn | None = None,
        is_cancelled: CancelledFn | None = None,
        on_preview: PreviewFn | None = None,
    ) -> list[RawImage]: ...


@runtime_checkable
class BatchEngine(Protocol):
    """An engine that can also run compatible jobs as one batch (`DiffusersEngine`); per job its images or why not."""

    def generate_batch(
        self, plans: Sequence[GenerationPlan], hooks: Sequence[JobHooks]
    ) -> list[list[RawImage] | EaselError]: ...


@dataclass
class _Entry:
    job: Job
    plan: GenerationPlan
    seq: int
    events: asyncio.Queue[JobEvent]
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    started_at: float = 0.0
    # Progress as last reported, so a preview finished on the encoder thread goes out with the current step
    # (events stay in step order); the lock orders the worker's and the encoder's emits.
    progress_lock: threading.Lock = field(default_factory=threading.Lock)
    step: int = 0
    total: int = 0
    finished: bool = False
    preview_at: float = 0.0
    preview_busy: bool = False


@dataclass
class _Worker:
    """One device: its engine, its thread, and the job it runs (guarded by the executor's condition)."""

    name: str
    engine: ImageEngine
    running: list[_Entry] = field(default_factory=list)  # one job, or a batch of compatible jobs
    thread: threading.Thread | None = None
    resident: list[str] = field(default_factory=list)  # the models it held when it last became idle


@runtime_checkable
class ResidentModels(Protocol):
    def loaded_names(self) -> list[str]: ...


def resident_models(engine: object) -> list[str]:
    """The models an engine holds in memory: DiffusersEngine's loader says; an engine that cannot say holds none.

    Called only by the engine's own worker while it is idle, so the loader is not changing underneath.
    """
    for source in (engine, getattr(engine, "loader", None)):
        if isinstance(source, ResidentModels):
            return list(source.loaded_names())
    return []


def worker_devices(devices: Sequence[str]) -> list[str]:
    """The devices to run workers on: `auto` means every CUDA device torch sees (cpu when there is none)."""
    if list(devices) != ["auto"]:
        return list(devices)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i}" for i in range(count)] or ["cpu"]


def device_problem(devices: Sequence[str]) -> str | None:
    """Why a listed device cannot run here (no CUDA in this torch or no GPU, an index past the last GPU, no MPS),
    or None when every one can."""
    for device in devices:
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                build = "has no CUDA support" if torch.version.cuda is None else "finds no CUDA GPU or driver"
                return f"{device} asked for, but this torch ({torch.__version__}) {build}; use cpu or auto"
            index = int(device.partition(":")[2] or 0)
            if index >= torch.cuda.device_count():
                return f"{device} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)"
        elif device == "mps" and not torch.backends.mps.is_available():
            return "mps asked for, but this machine has no Apple GPU (MPS); use cpu or auto"
    return None


def _device_name(engine: object, fallback: str) -> str:
    """What a worker is called in the log: its engine's device (`cpu`, `cuda:0`), else `fallback`."""
    device = getattr(engine, "device", None)
    return device if isinstance(device, str) and device else fallback


def encode_raw(raw: RawImage) -> GeneratedImage:
    return GeneratedImage(
        png=encode_png(raw.image, raw.infotext, raw.extras),
        seed=raw.seed,
        infotext="\n".join(text for text in (raw.infotext, raw.extras) if text),  # an upscale's fields shown too
        width=raw.image.width,
        height=raw.image.height,
        description=raw.description,
    )


class GpuExecutor:
    """In-process implementation of `engine.jobs.Executor`: one worker thread per engine, each owning its device.

    A job runs whole on one worker. The limits, the fair order and the queue positions are shared by all workers.
    """

    def __init__(
        self,
        engines: ImageEngine | Sequence[ImageEngine],
        *,
        max_queued_per_user: int,
        max_queued_total: int,
        encode: Callable[[RawImage], GeneratedImage] = encode_raw,
        name: str = "gpu",
        preview_interval: float | None = PREVIEW_INTERVAL,
        clock: Callable[[], float] = time.perf_counter,
        planner: Callable[[GenerationParams], GenerationPlan] = make_plan,
        max_batch_images: int = 1,
        warm_up: str | None = None,
        costs: CostLimits = NO_COST_LIMITS,
    ) -> None:
        """`preview_interval`: least seconds between two previews of a job (None: no previews at all).

        `clock` times jobs for the ETA estimates (a fake one in tests). `planner` makes each job's plan once, at
        submit (the registry's, which knows each model's traits); a plan that cannot be made refuses the job.
        `max_batch_images`: a free worker takes, with the next job, compatible waiting jobs up to this many images
        in all (1: every job runs alone); only engines that can run batches (`BatchEngine`) get more than one.
        `warm_up`: a model each worker warms up (`engine.warm_up`) before its first job, e.g. to compile it.
        `costs`: the most work (by the plan's cost) one job, and one user's jobs together, may ask for.
        """
        engine_list = list(engines) if isinstance(engines, Sequence) else [engines]
        if not engine_list:
            raise ValueError("GpuExecutor needs at least one engine")
        self.engines = engine_list
        self.max_queued_per_user = max_queued_per_user
        self.max_queued_total = max_queued_total
        self.preview_interval = preview_interval
        self._encode = encode
        self._clock = clock
        self._planner = planner
        self.max_batch_images = max_batch_images
        self.warm_up = warm_up
        self.costs = costs
        self._workers = [_Worker(_device_name(engine, f"{name}{i}"), engine) for i, engine in enumerate(engine_list)]
        self._cond = threading.Condition()
        self._room: WaitingRoom[_Entry] = WaitingRoom()
        self._by_id: dict[str, _Entry] = {}  # every job booked here and not yet ended: waiting or running
        self._run_times = RunTimes()
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._planning = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"easel-plan-{name}")
        # One encoder thread per worker, so that encoding one worker's images never queues behind another's.
        self._encoder = ThreadPoolExecutor(max_workers=len(self._workers), thread_name_prefix=f"easel-encode-{name}")

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for worker in self._workers:
            worker.thread = threading.Thread(
                target=self._work, args=(worker,), name=f"easel-worker-{name_safe(worker.name)}", daemon=True
            )
            worker.thread.start()

    # -- the Executor protocol (event loop side) ----------------------------------------------------------------

    async def submit(self, job: Job) -> Ticket:
        outcome = (await self.submit_many([job]))[0]
        if isinstance(outcome, EaselError):
            raise outcome
        return outcome

    async def submit_many(self, jobs: Sequence[Job]) -> list[Ticket | EaselError]:
        """Queue several jobs at once (a remote worker's share), booked together so that a free device sees them
        all and can batch them; per job its ticket or why it was refused."""
        if self._loop is None:
            await self.start()
        loop = asyncio.get_running_loop()
        outcomes: list[Ticket | EaselError] = []
        plans: list[GenerationPlan | EaselError] = []
        for job in jobs:
            # The plan parses the prompt: off the event loop. InvalidParamsError refuses the job before it is queued.
            try:
                made = await loop.run_in_executor(self._planning, self._planner, job.params)
                too_much = job_cost_problem(made.cost(), self.costs)
                plans.append(made if too_much is None else InvalidParamsError(too_much))
            except EaselError as err:
                plans.append(err)
            except Exception as err:  # a bug, or params this engine cannot read: that job fails, the rest go on
                log.exception("job %s: could not be planned", job.job_id)
                plans.append(GenerationFailedError(f"Easel could not plan this job ({type(err).__name__}: {err})."))
        with self._cond:
            for job, plan in zip(jobs, plans, strict=True):
                outcomes.append(plan if isinstance(plan, EaselError) else self._book_locked(job, plan))
            self._cond.notify_all()
        self._announce_positions()
        return outcomes

    def _book_locked(self, job: Job, plan: GenerationPlan) -> Ticket | EaselError:
        if self._closing:
            return QueueFullError("Easel is shutting down; try again in a moment.")
        problem = admission_problem(
            job,
            [e.job for e in self._by_id.values()],
            self.max_queued_per_user,
            self.max_queued_total,
            lambda: self._first_free_locked(job.user_id),
        )
        if problem is None:
            mine = sum(e.plan.cost() for e in self._by_id.values() if e.job.user_id == job.user_id)
            problem = user_cost_problem(plan.cost(), mine, self.costs)
        if problem is not None:
            return QueueFullError(problem)
        entry = _Entry(job=job, plan=plan, seq=self._room.next_seq(), events=asyncio.Queue())
        self._room.book(entry)
        self._by_id[job.job_id] = entry
        log.info("job %s queued for user %s", job.job_id, job.user_id)
        return Ticket(job=job, events=event_stream(entry.events))

    def cancel(self, job_id: str) -> bool:
        shared = False
        with self._cond:
            entry = self._by_id.get(job_id)
            if entry is None:
                return False
            if self._room.drop(entry):
                del self._by_id[job_id]
                queued = True
            else:
                entry.cancel_requested.set()
                queued = False
                # In a batch with others the job's rows are dropped from what it returns; its user hears now.
                shared = any(entry in w.running and len(w.running) > 1 for w in self._workers)
        if queued:
            log.info("job %s cancelled while queued", job_id)
            self._emit(entry, WasCancelled())
            self._announce_positions()
        elif shared:
            log.info("job %s cancelled inside a batch; the others go on", job_id)
            self._finish(entry, WasCancelled())
        return True

    def position(self, job_id: str) -> int | None:
        with self._cond:
            entry = self._by_id.get(job_id)
            if entry is None:
                return None
            return self._room.position(entry) or 0  # 0: running

    def worker_lines(self) -> list[str] | None:
        return None  # the jobs run here, on this process's devices

    def loaded_models(self) -> list[str]:
        """The models some worker holds in memory, as of when each last became idle."""
        with self._cond:
            return sorted({name for worker in self._workers for name in worker.resident})

    def queue_length(self) -> int:
        with self._cond:
            return len(self._by_id)

    def speed(self) -> float | None:
        """Measured seconds per unit of plan cost, over all models; None before the first job finished."""
        with self._cond:
            return self._run_times.rate()

    async def close(self) -> None:
        with self._cond:
            self._closing = True
            for worker in self._workers:
                for entry in worker.running:
                    entry.cancel_requested.set()
            self._cond.notify_all()
        for worker in self._workers:
            thread = worker.thread
            while thread is not None and thread.is_alive():  # noqa: ASYNC110 - a thread has no awaitable to wait on
                await asyncio.sleep(0.02)
        self._encoder.shutdown(wait=False, cancel_futures=False)
        self._planning.shutdown(wait=False, cancel_futures=True)

    # -- internals ----------------------------------------------------------------------------------------------

    def _emit(self, entry: _Entry, event: JobEvent) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(entry.events.put_nowait, event)

    def _announce_positions(self) -> None:
        """Tell every waiting job where it stands and when it should be done (a talkative queue)."""
        with self._cond:
            order = self._room.order()
            running = [w.running for w in self._workers if w.running]
            etas = self._etas_locked(order, running)
            updates = [(entry, i + 1, eta) for i, (entry, eta) in enumerate(zip(order, etas, strict=True))]
        for entry, position, eta in updates:
            self._emit(entry, Queued(position=position, ahead=position - 1 + len(running), eta_seconds=eta))

    def _first_free_locked(self, user_id: str) -> float | None:
        """Seconds until the user's first job is done (a queue slot frees), None while nothing is known."""
        now = self._clock()
        soonest: list[float] = []
        running = [w.running for w in self._workers if w.running]
        for batch in running:
            if any(e.job.user_id == user_id for e in batch):
                seconds = self._run_times.estimate(batch[0].job.params.model, sum(e.plan.cost() for e in batch))
                if seconds is not None:
                    soonest.append(max(0.0, seconds - (now - batch[0].started_at)))
        order = self._room.order()
        etas = self._etas_locked(order, running)
        soonest += [
            eta for entry, eta in zip(order, etas, strict=True) if eta is not None and entry.job.user_id == user_id
        ]
        return min(soonest, default=None)

    def _etas_locked(self, order: list[_Entry], running: list[list[_Entry]]) -> list[float | None]:
        """Seconds until each waiting job is done, from the moving estimates; None while nothing is known."""
        now = self._clock()
        left: list[float] = []
        waiting: list[float] = []
        for batch in running:
            seconds = self._run_times.estimate(batch[0].job.params.model, sum(e.plan.cost() for e in batch))
            if seconds is None:
                return [None] * len(order)
            left.append(seconds - (now - batch[0].started_at))
        for entry in order:
            seconds = self._run_times.estimate(entry.job.params.model, entry.plan.cost())
            if seconds is None:
                return [None] * len(order)
            waiting.append(seconds)
        return list(finish_times(left, len(self._workers), waiting))

    def _take_next(self, worker: _Worker) -> list[_Entry]:
        """The next job in fair order (model affinity aside) and the compatible waiting jobs that share its batch;
        empty when the executor closes."""
        resident = resident_models(worker.engine)  # the worker's own thread, idle: its loader is not changing
        with self._cond:
            worker.resident = resident
            while not self._room and not self._closing:
                self._cond.wait()
            if self._closing:
                return []
            pick = self._room.pick(resident)
            assert pick is not None  # this worker can run any waiting job
            batch = self._room.take(pick, self.max_batch_images if isinstance(worker.engine, BatchEngine) else 1)
            started = self._clock()
            for entry in batch:
                entry.started_at = started
            worker.running = batch
            return batch

    def _work(self, worker: _Worker) -> None:
        warm_up = getattr(worker.engine, "warm_up", None)
        if self.warm_up is not None and callable(warm_up):
            try:
                warm_up(self.warm_up, should_stop=lambda: self._closing)
            except Cancelled:
                return
            except Exception:  # a failed warm-up only costs speed: the jobs still run
                log.exception("warming up %s on %s failed", self.warm_up, worker.name)
        while True:
            batch = self._take_next(worker)
            if not batch:
                return
            self._announce_positions()
            self._run(worker, batch)
            with self._cond:
                worker.running = []

    def _run(self, worker: _Worker, batch: list[_Entry]) -> None:
        for entry in batch:
            entry.preview_at = time.perf_counter()
            log.info("job %s started (%s) on %s", entry.job.job_id, entry.job.params.model, worker.name)
            self._emit(entry, Started())
        if len(batch) > 1:
            log.info("batch of %d jobs on %s: %s", len(batch), worker.name, " ".join(e.job.job_id for e in batch))
        outcomes = self._generate(worker, batch)
        if len(batch) > 1 and all(isinstance(o, OutOfMemoryError) for o in outcomes):
            # Together they did not fit; each alone may. A batch must never fail a job that would run alone.
            log.info("batch of %d jobs ran out of memory on %s; running them one by one", len(batch), worker.name)
            outcomes = [self._generate(worker, [entry])[0] for entry in batch]
        done = [(e, raws) for e, raws in zip(batch, outcomes, strict=True) if not isinstance(raws, EaselError)]
        if done:
            with self._cond:
                seconds = self._clock() - batch[0].started_at
                self._run_times.record(batch[0].job.params.model, sum(e.plan.cost() for e in batch), seconds)
        for entry, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Cancelled):
                log.info("job %s cancelled while running", entry.job.job_id)
                self._finish(entry, WasCancelled())
            elif isinstance(outcome, EaselError):
                log.info("job %s failed: %s", entry.job.job_id, outcome)
                self._finish(entry, Failed(outcome))
            else:
                self._encoder.submit(self._encode_and_finish, entry, outcome)

    def _generate(self, worker: _Worker, batch: list[_Entry]) -> list[list[RawImage] | EaselError]:
        """Each job's images, or why it has none; never raises (the worker must survive any job)."""
        try:
            if len(batch) == 1:
                entry, hooks = batch[0], self._hooks(batch[0])
                return [
                    worker.engine.generate(
                        entry.plan, on_step=hooks.on_step, is_cancelled=hooks.is_cancelled, on_preview=hooks.on_preview
                    )
                ]
            assert isinstance(worker.engine, BatchEngine)
            return worker.engine.generate_batch([e.plan for e in batch], [self._hooks(e) for e in batch])
        except EaselError as err:
            return [err] * len(batch)
        except Exception as err:
            log.exception("job(s) %s crashed", " ".join(e.job.job_id for e in batch))
            return [GenerationFailedError(f"Generation failed unexpectedly: {type(err).__name__}")] * len(batch)

    def _hooks(self, entry: _Entry) -> JobHooks:
        def offer_preview(step: int, total: int, source: PreviewSource) -> None:
            self._offer_preview(entry, source)

        return JobHooks(
            on_step=lambda step, total: self._progress(entry, step, total),
            is_cancelled=entry.cancel_requested.is_set,
            on_preview=offer_preview if self.preview_interval is not None else None,
        )

    def _progress(self, entry: _Entry, step: int, total: int) -> None:
        with entry.progress_lock:
            entry.step, entry.total = step, total
            if not entry.finished:
                self._emit(entry, Progress(step=step, total=total))

    def _offer_preview(self, entry: _Entry, source: PreviewSource) -> None:
        """Worker thread, after a step: render a preview only when one is due and the last is encoded."""
        assert self.preview_interval is not None
        now = time.perf_counter()
        if entry.finished or entry.preview_busy or now - entry.preview_at < self.preview_interval:
            return
        entry.preview_at = now
        try:
            image = source.render()
        except Exception:  # a preview is a nicety: never let it fail the job
            log.exception("job %s: preview failed", entry.job.job_id)
            return
        entry.preview_busy = True
        self._encoder.submit(self._send_preview, entry, image)

    def _send_preview(self, entry: _Entry, image: Image.Image) -> None:
        """Encoder thread: JPEG-encode the preview and report it with the latest step."""
        try:
            data = encode_preview(image)
        except Exception:
            log.exception("job %s: encoding a preview failed", entry.job.job_id)
            return
        finally:
            entry.preview_busy = False
        with entry.progress_lock:
            if not entry.finished and entry.total:
                self._emit(entry, Progress(step=entry.step, total=entry.total, preview=data))

    def _encode_and_finish(self, entry: _Entry, raws: list[RawImage]) -> None:
        try:
            images = tuple(self._encode(raw) for raw in raws)
        except Exception as err:
            log.exception("job %s: encoding failed", entry.job.job_id)
            self._finish(entry, Failed(GenerationFailedError(f"Encoding the image failed: {type(err).__name__}")))
            return
        seconds = self._clock() - entry.started_at
        notes = tuple(dict.fromkeys(note for raw in raws for note in raw.notes))
        result = JobResult(images=images, infotext=images[0].infotext if images else "", seconds=seconds, notes=notes)
        log.info("job %s finished in %.2f s", entry.job.job_id, seconds)
        self._finish(entry, Finished(result))

    def _finish(self, entry: _Entry, event: JobEvent) -> None:
        """The job's last event, once (a job cancelled inside a batch ends before its batch does)."""
        with self._cond:
            self._by_id.pop(entry.job.job_id, None)
        with entry.progress_lock:
            if entry.finished:
                return
            entry.finished = True
            self._emit(entry, event)


def name_safe(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)
