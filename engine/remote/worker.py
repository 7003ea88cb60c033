"""GPU workers on other machines, the worker's side: `RemoteWorker` runs what the bot hands it on a local
`GpuExecutor` and streams progress, previews and results back (see `engine.remote.transport` for the keys).

A worker knows no Discord token and holds no queue of its own beyond what the bot sent it: the bot decides who
runs what. It announces itself every `heartbeat` seconds (devices, models with their A1111 hashes, what is loaded,
free memory, speed, its jobs) and refreshes its jobs' stream entries with each beat, so a long job is never taken
for a lost one. A job naming a model hash this worker's file does not have is refused, never drawn with another
file. On shutdown it gives its running jobs back (the bot requeues them for another worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.errors import EaselError, GenerationFailedError, ModelUnavailableError
from engine.jobs import TERMINAL_EVENTS, Failed, Job, JobEvent, Progress, Queued, Started, Ticket, WasCancelled
from engine.remote.transport import (
    HELLO,
    HELLO_MAXLEN,
    PROGRESS,
    PROGRESS_MAXLEN,
    RESULTS,
    TIMEOUT,
    WORKER_GROUP,
    jobs_key,
    retrying,
    stream_entries,
)
from engine.remote.wire import (
    Hello,
    WireError,
    WorkerModel,
    decode_job,
    encode_event,
    encode_hello,
    job_init_image,
    job_model_hash,
    valid_job_id,
)

if TYPE_CHECKING:
    from engine.blobs import BlobStore
    from engine.executor import GpuExecutor
    from engine.models.registry import ModelRegistry

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.5  # least seconds between two plain progress entries of a job (previews have their own rate)


def default_worker_name(host: str, pid: int) -> str:
    """A worker's name when EASEL_WORKER_NAME is not set: the host's name and the process's id, so two workers on
    one machine never share a name (a name that is set is kept across restarts: a restarted run's old jobs then
    go elsewhere at once, not after the timeout)."""
    safe = "".join(c if c.isalnum() or c in ".-_" else "-" for c in host)[:50] or "worker"
    return f"{safe}-{pid}"


def free_memory(devices: list[str]) -> int | None:
    """Bytes free on the first device: the GPU's own count on CUDA, the machine's available memory on CPU."""
    try:
        if devices and devices[0].startswith("cuda"):
            import torch

            return int(torch.cuda.mem_get_info(devices[0])[0])
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, RuntimeError, AttributeError):
        return None


def advertised_models(registry: ModelRegistry) -> list[WorkerModel]:
    """This worker's models, with the A1111 hashes already known (cached by size and mtime): at once, however
    many gigabytes the folder holds. `RemoteWorker` hashes the others in the background."""
    return [
        WorkerModel(e.name, registry.known_hash(e.name), e.family, e.latent_scale, e.context_width)
        for e in registry.entries()
        if e.usable and e.kind not in ("hub", "remote")
    ]


@dataclass(frozen=True)
class Handed:
    """A job as the bot handed it: its entry in this worker's stream, the job, the model hash its file must have
    (if the bot knows one) and its init image (an img2img job)."""

    entry_id: bytes
    job: Job
    model_hash: str | None
    init_image: bytes | None


@dataclass(frozen=True)
class Outgoing:
    """What a job says, on its way to the bot: progress (no `entry_id`), or its last word, which acknowledges the
    job's entry in this worker's stream once Redis has taken it."""

    job_id: str
    fields: dict[str, bytes]
    entry_id: bytes | None = None


class RemoteWorker:
    """One worker process: `run()` until `stop` is set."""

    def __init__(
        self,
        redis: Any,
        executor: GpuExecutor,
        registry: ModelRegistry,
        *,
        name: str,
        devices: list[str],
        max_images: int,
        heartbeat: float = TIMEOUT / 5,
        progress_interval: float = PROGRESS_INTERVAL,
        memory: Callable[[], int | None] | None = None,
        blobs: BlobStore | None = None,
    ) -> None:
        self.redis: Any = redis
        self.executor = executor
        self.registry = registry
        self.blobs = blobs  # where the engine reads init images (img2img jobs carry theirs)
        self.name = name
        self.boot = secrets.token_hex(8)
        self.devices = devices
        self.max_images = max_images
        self.heartbeat = heartbeat
        self.progress_interval = progress_interval
        self._memory = memory or (lambda: free_memory(devices))
        self.key = jobs_key(name, self.boot)
        self._models: list[WorkerModel] = []
        self._running: dict[str, bytes] = {}  # job -> its entry id in our stream
        self._tasks: set[asyncio.Task[None]] = set()
        self._outbox: asyncio.Queue[Outgoing] = asyncio.Queue()
        self._posted: set[str] = set()
        self._accepting = True
        self._sent = asyncio.Event()  # set whenever a job's last word has gone out
        self._beat_now = asyncio.Event()
        self._stop = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self._models = await asyncio.to_thread(advertised_models, self.registry)
        hashing = asyncio.create_task(self._hash_models(), name=f"easel-worker-{self.boot}-hashing")
        log.info(
            "worker %s (run %s): %s, %d model(s): %s",
            self.name,
            self.boot,
            ", ".join(self.devices),
            len(self._models),
            ", ".join(m.name for m in self._models),
        )
        await retrying("worker start", self._create_group, stop, once=True)
        loops = [
            asyncio.create_task(retrying("heartbeat", self._beat, stop), name=f"easel-worker-{self.boot}-heartbeat"),
            asyncio.create_task(retrying("jobs", self._read_jobs, stop), name=f"easel-worker-{self.boot}-jobs"),
            asyncio.create_task(
                retrying("results", self._send_results, stop), name=f"easel-worker-{self.boot}-results"
            ),
        ]
        await stop.wait()
        log.info("worker %s stopping: %d running job(s) go back to the bot", self.name, len(self._running))
        self._accepting = False
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._beat_once(), 2)
        await self.executor.close()  # cancels the running jobs: their WasCancelled goes out as "given back"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain(), 2)
        for job_id, entry_id in list(self._running.items()):  # those the local queue still held
            self._post(job_id, entry_id, WasCancelled())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain(), 5)
        for task in [*loops, *self._tasks, hashing]:
            task.cancel()
        await asyncio.gather(*loops, *self._tasks, hashing, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.redis.aclose()  # its stream stays until the bot notices the silence (a worker may not DEL)

    async def _drain(self) -> None:
        """Until every job this worker took has had its last word sent."""
        while self._running:
            self._sent.clear()
            await self._sent.wait()

    async def _create_group(self) -> None:
        from redis.exceptions import ResponseError

        try:
            await self.redis.xgroup_create(self.key, WORKER_GROUP, id="0", mkstream=True)
        except ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise

    def hello(self) -> Hello:
        return Hello(
            worker=self.name,
            boot=self.boot,
            devices=tuple(self.devices),
            models=tuple(self._models),
            loaded=tuple(n for n in self.executor.loaded_models() if any(m.name == n for m in self._models)),
            free_memory=self._memory(),
            slots=len(self.executor.engines),
            max_images=self.max_images,
            speed=self.executor.speed(),
            running=tuple(self._running),
            accepting=self._accepting,
        )

    async def _beat_once(self) -> None:
        await self.redis.xadd(HELLO, encode_hello(self.hello()), maxlen=HELLO_MAXLEN, approximate=True)

    async def _beat(self) -> None:
        self._beat_now.clear()  # before the beat: a job finishing while it goes out asks for the next at once
        await self._beat_once()
        if self._running:
            # Refresh our jobs' entries: idle past the timeout, they would be taken for lost.
            await self.redis.xclaim(
                self.key,
                WORKER_GROUP,
                self.boot,
                min_idle_time=0,
                message_ids=list(self._running.values()),
                justid=True,
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._beat_now.wait(), self.heartbeat)

    async def _read_jobs(self) -> None:
        from redis.exceptions import ResponseError

        try:
            reply = await self.redis.xreadgroup(WORKER_GROUP, self.boot, {self.key: ">"}, count=64, block=1000)
        except ResponseError as err:
            if "NOGROUP" not in str(err):
                raise
            await self._create_group()  # Redis came back without its data
            return
        jobs: list[Handed] = []
        for entry_id, fields in stream_entries(reply):
            kind = fields.get("kind", b"")
            if kind == b"cancel":
                job_id = fields.get("job_id", b"").decode(errors="replace")
                log.info("job %s: cancel from the bot", job_id)
                self.executor.cancel(job_id)
                await self.redis.xack(self.key, WORKER_GROUP, entry_id)
                continue
            try:
                job = decode_job(fields)
                jobs.append(Handed(entry_id, job, job_model_hash(fields), job_init_image(fields, job)))
            except WireError as err:
                log.warning("dropped a malformed job entry: %s", err)
                job_id = fields.get("job_id", b"").decode(errors="replace")
                if valid_job_id(job_id):  # the bot waits for it: say why it will not run
                    self._running[job_id] = entry_id
                    self._post(
                        job_id, entry_id, Failed(GenerationFailedError(f"The worker could not read the job: {err}"))
                    )
                else:
                    await self.redis.xack(self.key, WORKER_GROUP, entry_id)
        if jobs:
            await self._start(jobs)

    async def _start(self, jobs: list[Handed]) -> None:
        runnable: list[tuple[bytes, Job]] = []
        for handed in jobs:
            entry_id, job, digest, image = handed.entry_id, handed.job, handed.model_hash, handed.init_image
            if not self._accepting:  # handed over just as this worker stops: straight back
                self._running[job.job_id] = entry_id
                self._posted.discard(job.job_id)
                self._post(job.job_id, entry_id, WasCancelled())
                continue
            if job.job_id in self._running:  # sent again (a bot restarted meanwhile): the run under way answers it
                log.info("job %s: already running here", job.job_id)
                await self.redis.xack(self.key, WORKER_GROUP, entry_id)
                continue
            self._running[job.job_id] = entry_id
            self._posted.discard(job.job_id)
            try:
                problem = await self._model_problem(job.params.model, digest)
                if problem is None and image is not None:
                    problem = await self._keep(image)
            except Exception as err:  # one job's failure must not stop the worker: that job fails, with why
                log.exception("job %s: could not be prepared", job.job_id)
                problem = f"Worker {self.name} could not prepare the job ({type(err).__name__}: {err})."
            if problem is None:
                runnable.append((entry_id, job))
            else:
                log.warning("job %s refused: %s", job.job_id, problem)
                self._post(job.job_id, entry_id, Failed(ModelUnavailableError(problem)))
        try:
            outcomes = await self.executor.submit_many([job for _, job in runnable])
        except Exception as err:  # as above: these jobs fail, the worker goes on serving
            log.exception("jobs %s: could not be queued", ", ".join(job.job_id for _, job in runnable))
            failed = GenerationFailedError(f"Worker {self.name} could not queue the job ({type(err).__name__}).")
            outcomes = [failed] * len(runnable)
        for (entry_id, job), outcome in zip(runnable, outcomes, strict=True):
            if isinstance(outcome, EaselError):
                self._post(job.job_id, entry_id, Failed(outcome))
                continue
            log.info("job %s started (%s)", job.job_id, job.params.model)
            task = asyncio.create_task(
                self._follow(entry_id, outcome), name=f"easel-worker-{self.boot}-job-{job.job_id}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _keep(self, image: bytes) -> str | None:
        """Store a job's init image where this worker's engine reads it; why not, if it cannot."""
        if self.blobs is None:
            return f"Worker {self.name} keeps no uploads, so it cannot run img2img jobs."
        try:
            await asyncio.to_thread(self.blobs.put, image)
        except (OSError, EaselError) as err:
            return f"Worker {self.name} could not store the init image: {err}"
        return None

    async def _hash_models(self) -> None:
        """Hash, one by one and off the loop, the models whose hash is not known yet (a first start: minutes for
        a big folder); each is announced as soon as it is known."""
        for model in list(self._models):
            if model.hash is None:
                await self._hash_of(model.name)

    async def _hash_of(self, name: str) -> str | None:
        """The model's hash, computing it now if need be (None for a model without a file, e.g. built-in)."""
        model = next((m for m in self._models if m.name == name), None)
        if model is None or model.hash is not None:
            return model.hash if model is not None else None
        entry = next((e for e in self.registry.entries() if e.name == name), None)
        if entry is None:
            return None
        try:
            digest = await asyncio.to_thread(self.registry.model_hash, entry)
        except OSError as err:
            log.warning("model %s: its hash cannot be read (%s)", name, err)
            return None
        if digest is not None:
            self._models = [dataclasses.replace(m, hash=digest) if m.name == name else m for m in self._models]
            self._beat_now.set()
        return digest

    async def _model_problem(self, name: str, digest: str | None) -> str | None:
        model = next((m for m in self._models if m.name == name), None)
        if model is None:
            return f"Worker {self.name} does not have the model {name!r}."
        if digest is not None and model.hash is None:
            model = dataclasses.replace(model, hash=await self._hash_of(name))  # the job names one: know ours
        if digest is not None and model.hash is not None and model.hash != digest:
            return (
                f"Worker {self.name} has a different file for {name!r} (hash {model.hash}, the job asks for "
                f"{digest}); it will not draw with another model."
            )
        return None

    async def _follow(self, entry_id: bytes, ticket: Ticket) -> None:
        job_id = ticket.job.job_id
        last = 0.0
        async for event in ticket.events:
            if isinstance(event, Queued):
                continue
            if isinstance(event, TERMINAL_EVENTS):
                self._post(job_id, entry_id, event)
                return
            if isinstance(event, Progress) and event.preview is None:
                now = time.monotonic()
                if now - last < self.progress_interval and event.step < event.total:
                    continue
                last = now
            assert isinstance(event, Started | Progress)
            self._outbox.put_nowait(Outgoing(job_id, encode_event(event)))

    def _post(self, job_id: str, entry_id: bytes, event: JobEvent) -> None:
        """The job's last word, once."""
        if job_id in self._posted:
            return
        self._posted.add(job_id)
        self._outbox.put_nowait(Outgoing(job_id, encode_event(event), entry_id))

    async def _send_results(self) -> None:
        """Send what the jobs said, in order; a terminal event is sent until Redis takes it (then its entry is
        acknowledged), so a result made while Redis was away goes out when it is back."""
        out = await self._outbox.get()
        stamped = {
            **out.fields,
            "job_id": out.job_id.encode(),
            "worker": self.name.encode(),
            "boot": self.boot.encode(),
        }
        if out.entry_id is None:
            await self.redis.xadd(PROGRESS, stamped, maxlen=PROGRESS_MAXLEN, approximate=True)
            return
        try:
            await self.redis.xadd(RESULTS, stamped)
        except BaseException:
            self._requeue_front(out)
            raise
        await self.redis.xack(self.key, WORKER_GROUP, out.entry_id)
        self._running.pop(out.job_id, None)
        self._sent.set()
        self._beat_now.set()  # tell the bot at once that a slot is free

    def _requeue_front(self, out: Outgoing) -> None:
        rest = []
        while not self._outbox.empty():
            rest.append(self._outbox.get_nowait())
        self._outbox.put_nowait(out)
        for item in rest:
            self._outbox.put_nowait(item)
