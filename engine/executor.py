"""The asyncio-guarded GPU executor: a bounded, fair queue and one worker thread per device that owns torch.

The event loop only books jobs and forwards events; the worker thread runs the model, and a separate encoder
thread turns images into PNG bytes (and previews into JPEG bytes) so encoding never delays the next job's denoising.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

from engine.errors import Cancelled, EaselError, GenerationFailedError, QueueFullError
from engine.images import encode_png
from engine.jobs import (
    TERMINAL_EVENTS,
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
)
from engine.params import GenerationParams
from engine.pipeline import CancelledFn, ProgressFn, RawImage
from engine.previews import PreviewFn, PreviewSource, encode_preview

log = logging.getLogger(__name__)

# Discord shows about one edit per 2 s; a preview more often than this would be made and never seen.
PREVIEW_INTERVAL = 1.5


class ImageEngine(Protocol):
    """What the worker thread drives; `DiffusersEngine` in production, a fake in tests."""

    def generate(
        self,
        params: GenerationParams,
        *,
        on_step: ProgressFn | None = None,
        is_cancelled: CancelledFn | None = None,
        on_preview: PreviewFn | None = None,
    ) -> list[RawImage]: ...


@dataclass
class _Entry:
    job: Job
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


def fair_order(pending: list[tuple[str, int]], last_served: dict[str, int]) -> list[int]:
    """Order of pending jobs (user, submission seq) under round-robin between users.

    The next job belongs to the user served least recently (never served first), oldest job first; so one user
    with ten jobs cannot starve another with one. Returns the seqs in run order.
    """
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


def encode_raw(raw: RawImage) -> GeneratedImage:
    return GeneratedImage(
        png=encode_png(raw.image, raw.infotext),
        seed=raw.seed,
        infotext=raw.infotext,
        width=raw.image.width,
        height=raw.image.height,
    )


class GpuExecutor:
    """In-process implementation of `engine.jobs.Executor` with one worker thread (one device)."""

    def __init__(
        self,
        engine: ImageEngine,
        *,
        max_queued_per_user: int,
        max_queued_total: int,
        encode: Callable[[RawImage], GeneratedImage] = encode_raw,
        name: str = "gpu0",
        preview_interval: float | None = PREVIEW_INTERVAL,
    ) -> None:
        """`preview_interval`: least seconds between two previews of a job (None: no previews at all)."""
        self.engine = engine
        self.max_queued_per_user = max_queued_per_user
        self.max_queued_total = max_queued_total
        self.preview_interval = preview_interval
        self._encode = encode
        self._name = name
        self._cond = threading.Condition()
        self._pending: dict[int, _Entry] = {}
        self._by_id: dict[str, _Entry] = {}
        self._running: _Entry | None = None
        self._last_served: dict[str, int] = {}
        self._served_clock = 0
        self._seq = itertools.count()
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: threading.Thread | None = None
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"easel-encode-{name}")

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._worker = threading.Thread(target=self._work, name=f"easel-worker-{name_safe(self._name)}", daemon=True)
        self._worker.start()

    # -- the Executor protocol (event loop side) ----------------------------------------------------------------

    async def submit(self, job: Job) -> Ticket:
        if self._loop is None:
            await self.start()
        with self._cond:
            if self._closing:
                raise QueueFullError("Easel is shutting down; try again in a moment.")
            if job.job_id in self._by_id:
                raise QueueFullError("That job is already queued.")
            mine = sum(1 for e in self._by_id.values() if e.job.user_id == job.user_id)
            if mine >= self.max_queued_per_user:
                raise QueueFullError(
                    f"You already have {mine} job(s) waiting or running (the limit is {self.max_queued_per_user}); "
                    "wait for one to finish."
                )
            if len(self._by_id) >= self.max_queued_total:
                raise QueueFullError(f"The queue is full ({self.max_queued_total} jobs); try again when it is shorter.")
            entry = _Entry(job=job, seq=next(self._seq), events=asyncio.Queue())
            self._pending[entry.seq] = entry
            self._by_id[job.job_id] = entry
            self._cond.notify_all()
        log.info("job %s queued for user %s", job.job_id, job.user_id)
        self._announce_positions()
        return Ticket(job=job, events=self._stream(entry))

    def cancel(self, job_id: str) -> bool:
        with self._cond:
            entry = self._by_id.get(job_id)
            if entry is None:
                return False
            if entry.seq in self._pending:
                del self._pending[entry.seq]
                del self._by_id[job_id]
                queued = True
            else:
                entry.cancel_requested.set()
                queued = False
        if queued:
            log.info("job %s cancelled while queued", job_id)
            self._emit(entry, WasCancelled())
            self._announce_positions()
        return True

    def position(self, job_id: str) -> int | None:
        with self._cond:
            entry = self._by_id.get(job_id)
            if entry is None:
                return None
            if entry is self._running:
                return 0
            order = self._order_locked()
        return order.index(entry.seq) + 1

    def queue_length(self) -> int:
        with self._cond:
            return len(self._by_id)

    async def close(self) -> None:
        with self._cond:
            self._closing = True
            if self._running is not None:
                self._running.cancel_requested.set()
            self._cond.notify_all()
        worker = self._worker
        while worker is not None and worker.is_alive():  # noqa: ASYNC110 - a thread has no awaitable to wait on
            await asyncio.sleep(0.02)
        self._encoder.shutdown(wait=False, cancel_futures=False)

    # -- internals ----------------------------------------------------------------------------------------------

    async def _stream(self, entry: _Entry) -> AsyncIterator[JobEvent]:
        while True:
            event = await entry.events.get()
            yield event
            if isinstance(event, TERMINAL_EVENTS):
                return

    def _order_locked(self) -> list[int]:
        return fair_order([(e.job.user_id, seq) for seq, e in self._pending.items()], self._last_served)

    def _emit(self, entry: _Entry, event: JobEvent) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(entry.events.put_nowait, event)

    def _announce_positions(self) -> None:
        """Tell every waiting job where it stands (a talkative queue)."""
        with self._cond:
            order = self._order_locked()
            running = 1 if self._running is not None else 0
            updates = [(self._pending[seq], i + 1) for i, seq in enumerate(order)]
        for entry, position in updates:
            self._emit(entry, Queued(position=position, ahead=position - 1 + running))

    def _take_next(self) -> _Entry | None:
        with self._cond:
            while not self._pending and not self._closing:
                self._cond.wait()
            if self._closing:
                return None
            seq = self._order_locked()[0]
            entry = self._pending.pop(seq)
            self._served_clock += 1
            self._last_served[entry.job.user_id] = self._served_clock
            self._running = entry
            return entry

    def _work(self) -> None:
        while True:
            entry = self._take_next()
            if entry is None:
                return
            self._announce_positions()
            self._run(entry)
            with self._cond:
                self._running = None

    def _run(self, entry: _Entry) -> None:
        job = entry.job
        entry.started_at = entry.preview_at = time.perf_counter()
        log.info("job %s started (%s)", job.job_id, job.params.model)
        self._emit(entry, Started())

        def offer_preview(step: int, total: int, source: PreviewSource) -> None:
            self._offer_preview(entry, source)

        try:
            raws = self.engine.generate(
                job.params,
                on_step=lambda step, total: self._progress(entry, step, total),
                is_cancelled=entry.cancel_requested.is_set,
                on_preview=offer_preview if self.preview_interval is not None else None,
            )
        except Cancelled:
            log.info("job %s cancelled while running", job.job_id)
            self._finish(entry, WasCancelled())
            return
        except EaselError as err:
            log.info("job %s failed: %s", job.job_id, err)
            self._finish(entry, Failed(err))
            return
        except Exception as err:  # the worker must survive any single job's failure
            log.exception("job %s crashed", job.job_id)
            self._finish(entry, Failed(GenerationFailedError(f"Generation failed unexpectedly: {type(err).__name__}")))
            return
        self._encoder.submit(self._encode_and_finish, entry, raws)

    def _progress(self, entry: _Entry, step: int, total: int) -> None:
        with entry.progress_lock:
            entry.step, entry.total = step, total
            self._emit(entry, Progress(step=step, total=total))

    def _offer_preview(self, entry: _Entry, source: PreviewSource) -> None:
        """Worker thread, after a step: render a preview only when one is due and the last is encoded."""
        assert self.preview_interval is not None
        now = time.perf_counter()
        if entry.preview_busy or now - entry.preview_at < self.preview_interval:
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
        seconds = time.perf_counter() - entry.started_at
        result = JobResult(images=images, infotext=images[0].infotext if images else "", seconds=seconds)
        log.info("job %s finished in %.2f s", entry.job.job_id, seconds)
        self._finish(entry, Finished(result))

    def _finish(self, entry: _Entry, event: JobEvent) -> None:
        with self._cond:
            self._by_id.pop(entry.job.job_id, None)
        with entry.progress_lock:
            entry.finished = True
            self._emit(entry, event)


def name_safe(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)
