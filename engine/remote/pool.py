"""GPU workers on other machines, the bot's side: `RemotePool`, an `Executor` over Redis Streams.

The bot keeps admission, fair order, model affinity and batching (the same pure policy as in-process, from
`engine.queue_policy`, in `engine.waiting`'s room); workers only run what they are handed. The keys (see
`engine.remote.transport`):

- `easel:hello`      workers' heartbeats (devices, models with hashes, loaded models, free memory, speed, jobs)
- `easel:jobs:W:B`   one stream per run B of worker W, group `worker`: the jobs the bot hands it, and cancels
- `easel:progress`   progress and previews (capped; a lost one costs nothing)
- `easel:results`    each job's last event, group `bot`: read, handled, then acknowledged
- `easel:running`    job -> the worker run holding it, so a restarted bot re-attaches instead of running it again

Delivery is at least once and the result is taken once: the first terminal event for a job ends it, and any later
one (a worker thought dead that finishes after all) is dropped. A worker refreshes its jobs' entries with every
heartbeat (XCLAIM), so an entry idle past the timeout (XAUTOCLAIM) means its worker stopped: the job goes back to
the head of the queue for another. Everything a worker sends is checked by `engine.remote.wire` as user input is.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.errors import InvalidParamsError, ModelUnavailableError, QueueFullError
from engine.jobs import (
    TERMINAL_EVENTS,
    Failed,
    Finished,
    Job,
    JobEvent,
    Progress,
    Queued,
    Started,
    Ticket,
    WasCancelled,
    event_stream,
)
from engine.plan import GenerationPlan
from engine.queue_policy import (
    NO_COST_LIMITS,
    CostLimits,
    RunTimes,
    admission_problem,
    finish_times_on,
    job_cost_problem,
    user_cost_problem,
)
from engine.remote.transport import (
    BOT_GROUP,
    HELLO,
    HELLO_MAXLEN,
    PROGRESS,
    RESULTS,
    RUNNING,
    TIMEOUT,
    WORKER_GROUP,
    entry_list,
    jobs_key,
    redis_errors,
    retrying,
    stream_entries,
)
from engine.remote.wire import (
    Hello,
    WireError,
    WorkerModel,
    decode_event,
    decode_hello,
    encode_job,
    event_job_id,
    sender,
    valid_job_id,
)
from engine.waiting import Pick, WaitingRoom

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from engine.blobs import BlobStore

log = logging.getLogger(__name__)

ORPHANS = 512  # results kept for jobs not (yet) resubmitted after a bot restart...
ORPHAN_BYTES = 256 * 1024 * 1024  # ...and their bytes at most
DONE_REMEMBERED = 4096
MISSING_MODEL = ("wait", "refuse")


@dataclass
class _Worker:
    hello: Hello
    seen: float
    batches: list[_Batch] = field(default_factory=list)
    times: RunTimes = field(default_factory=RunTimes)

    @property
    def key(self) -> str:
        return jobs_key(self.hello.worker, self.hello.boot)

    @property
    def label(self) -> str:
        return f"{self.hello.worker}/{self.hello.boot}"


@dataclass
class _Batch:
    jobs: set[str]
    cost: float
    model: str
    sent_at: float


class JobState(enum.Enum):
    """Where a remote job is: one field, moved only by `_Entry`'s transitions."""

    WAITING = "waiting"  # in the waiting room
    SENT = "sent"  # handed to a worker run, which has not said it started
    RUNNING = "running"  # its worker said it started
    CANCELLING = "cancelling"  # on a worker, cancelled: it ends when the worker says so (or is lost)
    ENDED = "ended"  # its last event went out


ON_A_WORKER = (JobState.SENT, JobState.RUNNING, JobState.CANCELLING)


@dataclass
class _Entry:
    job: Job
    plan: GenerationPlan
    seq: int
    events: asyncio.Queue[JobEvent] = field(default_factory=asyncio.Queue)
    state: JobState = JobState.WAITING
    worker: str | None = None  # the worker run (jobs key) holding it, while it is on one
    held_by: set[str] = field(default_factory=set)  # every worker run it was given to: only they may answer

    def send_to(self, key: str) -> None:
        self.state, self.worker = JobState.SENT, key
        self.held_by.add(key)

    def start(self) -> bool:
        """Its worker said it started; whether that is news (the user hears Started once)."""
        if self.state is not JobState.SENT:
            return False
        self.state = JobState.RUNNING
        return True

    def cancel(self) -> None:
        self.state = JobState.CANCELLING

    def back(self) -> None:
        """Its worker is gone or gave it back: waiting again."""
        self.state, self.worker = JobState.WAITING, None

    def end(self) -> None:
        self.state = JobState.ENDED


class RemotePool:
    """`engine.jobs.Executor` for GPU workers on other machines (see the module's docstring).

    `planner`: the registry's (it knows every worker's models, see `on_models`); `model_hash`: the A1111 hash the
    bot knows for a model (None: any worker's file of the name); `missing`: "wait" (a job whose model no connected
    worker has waits, saying so) or "refuse" (it is refused at once); `on_models`: told the models all connected
    workers hold (name -> its family, latent scale, context width and hash) whenever that changes.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        planner: Callable[[Any], GenerationPlan],
        max_queued_per_user: int,
        max_queued_total: int,
        model_hash: Callable[[str], str | None] = lambda name: None,
        missing: str = "wait",
        timeout: float = TIMEOUT,
        on_models: Callable[[Mapping[str, WorkerModel]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        blobs: BlobStore | None = None,
        costs: CostLimits = NO_COST_LIMITS,
    ) -> None:
        if missing not in MISSING_MODEL:
            raise ValueError(f"missing must be one of {MISSING_MODEL}")
        self.redis: Any = redis  # redis-py's replies are loosely typed: read through `stream_entries`
        self._planner = planner
        self.max_queued_per_user = max_queued_per_user
        self.max_queued_total = max_queued_total
        self._model_hash = model_hash
        self.missing = missing
        self.timeout = timeout
        self._on_models = on_models
        self._blobs = blobs
        self.costs = costs
        self._clock = clock
        self._workers: dict[str, _Worker] = {}  # by jobs key
        self._room: WaitingRoom[_Entry] = WaitingRoom()
        self._by_id: dict[str, _Entry] = {}  # every job submitted here and not yet ended
        self._orphans: OrderedDict[str, dict[str, bytes]] = OrderedDict()
        self._orphan_bytes = 0
        self._done: OrderedDict[str, None] = OrderedDict()  # jobs ended here lately: a later result is a duplicate
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._started = False
        self._advertised: dict[str, WorkerModel] = {}  # connected workers' models
        self._catalog: dict[str, WorkerModel] = {}  # ... and those of workers away
        self._progress_from = b"$"
        self._joined = asyncio.Event()  # set whenever a worker connects
        self._replaced: dict[str, bool] = {}  # worker runs replaced by a newer run of the same name (-> not yet warned)
        self._hello_ok = clock()  # when the bot last heard Redis answer
        self._reachable_since = clock()  # since when it has, without a gap
        self._send_blocked_until = 0.0  # after a failed hand-over, a pause before the next

    # -- start and stop -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the results group and learn the workers from their latest heartbeats; then follow them."""
        if self._started:
            return
        self._started = True
        await retrying("start", self._bootstrap, self._stop, once=True)
        # Results that came in while no bot was reading: held for the jobs the restarted bot submits again.
        await retrying("start", self._drain_results, self._stop, once=True)
        for name, loop in (
            ("hellos", self._read_hellos),
            ("results", self._read_results),
            ("progress", self._read_progress),
            ("reaper", self._reap),
        ):
            self._tasks.append(asyncio.create_task(retrying(name, loop, self._stop), name=f"easel-remote-{name}"))

    async def _bootstrap(self) -> None:
        await self._ensure_group()
        now_ms = _ms(await self.redis.time())
        latest = entry_list(await self.redis.xrevrange(HELLO, count=HELLO_MAXLEN))
        for entry_id, fields in reversed(latest):  # oldest first: each worker's newest word counts
            age = (now_ms - int(entry_id.split(b"-")[0])) / 1000
            if age <= self.timeout:
                self._heard(fields, seen=self._clock() - max(age, 0.0), quiet=True)
            else:
                self._remember(fields)  # a worker away now: its models stay known, and their jobs wait for it
        self._models_changed()
        if self._on_models is not None:
            self._on_models(dict(self._catalog))  # even with no worker connected now
        info = await self.redis.xinfo_stream(HELLO) if await self.redis.exists(HELLO) else None
        self._hello_from = info["last-generated-id"] if info else b"0"
        log.info("remote workers: %d connected", len(self._workers))

    async def _ensure_group(self) -> None:
        from redis.exceptions import ResponseError

        try:
            await self.redis.xgroup_create(RESULTS, BOT_GROUP, id="0", mkstream=True)
        except ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise

    async def close(self) -> None:
        """Stop following. Jobs on workers go on; their results wait in Redis for the next start."""
        self._stop.set()
        for task in [*self._tasks, *self._sending]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._sending, return_exceptions=True)
        with contextlib.suppress(*redis_errors()):
            await self.redis.aclose()

    # -- the Executor protocol ----------------------------------------------------------------------------------

    async def submit(self, job: Job) -> Ticket:
        if self._stop.is_set():
            raise QueueFullError("Easel is shutting down; try again in a moment.")
        if not valid_job_id(job.job_id):
            raise ValueError(f"a job id for remote workers is 6 to 32 hex digits, not {job.job_id!r}")
        await self.start()
        plan = await asyncio.to_thread(self._planner, job.params)
        too_much = job_cost_problem(plan.cost(), self.costs)
        if too_much is not None:
            raise InvalidParamsError(too_much)
        problem = admission_problem(
            job,
            [e.job for e in self._by_id.values()],
            self.max_queued_per_user,
            self.max_queued_total,
            lambda: self._first_free(job.user_id),
        )
        if problem is None:
            mine = sum(e.plan.cost() for e in self._by_id.values() if e.job.user_id == job.user_id)
            problem = user_cost_problem(plan.cost(), mine, self.costs)
        if problem is not None:
            raise QueueFullError(problem)
        if self.missing == "refuse" and self._workers and not self._holders(job.params.model):
            raise ModelUnavailableError(
                f"No GPU worker connected has the model {job.params.model!r}; "
                f"they have: {', '.join(sorted(self._advertised)[:10]) or 'none'}."
            )
        entry = _Entry(job=job, plan=plan, seq=self._room.next_seq())
        self._by_id[job.job_id] = entry
        ticket = Ticket(job=job, events=event_stream(entry.events))
        recorded = await self._recorded_holder(job.job_id)  # the worker run a bot before a restart gave it to
        if recorded is not None:
            entry.held_by.add(recorded)
        if job.job_id not in self._by_id:  # its result (or a cancel) came while Redis was asked
            return ticket
        orphan = self._orphans.pop(job.job_id, None)
        if orphan is not None:
            self._orphan_bytes -= _size(orphan)  # its result came in before the restarted bot asked again
            log.info("job %s: a result already in from before the restart", job.job_id)
            self._result(entry, orphan)
            if job.job_id not in self._by_id:
                return ticket
        holder = self._workers.get(recorded or "")
        if holder is not None and job.job_id in holder.hello.running:
            log.info("job %s: still running on %s, from before the restart", job.job_id, holder.label)
            entry.send_to(holder.key)
            holder.batches.append(_Batch({job.job_id}, plan.cost(), job.params.model, self._clock()))
        else:
            self._room.book(entry)
            log.info("job %s queued for user %s", job.job_id, job.user_id)
            self._dispatch()
        self._announce()
        return ticket

    def cancel(self, job_id: str) -> bool:
        entry = self._by_id.get(job_id)
        if entry is None:
            return False
        if entry.state is JobState.WAITING:
            self._finish(entry, WasCancelled())  # (a job given back and queued again may still have its record)
            self._announce()
            return True
        entry.cancel()
        worker = self._workers.get(entry.worker or "")
        if worker is not None:
            self._send(worker.key, [{"kind": b"cancel", "job_id": job_id.encode()}])
        return True

    def position(self, job_id: str) -> int | None:
        entry = self._by_id.get(job_id)
        if entry is None:
            return None
        return self._room.position(entry) or 0  # 0: on a worker

    def loaded_models(self) -> list[str]:
        return sorted({name for w in self._workers.values() for name in w.hello.loaded})

    def queue_length(self) -> int:
        return len(self._by_id)

    def workers(self) -> list[Hello]:
        """The connected workers, as their latest heartbeats say."""
        return [w.hello for w in self._workers.values()]

    def worker_lines(self) -> list[str]:
        """One line per connected worker, for /about: its name, devices, models and how busy it is."""
        lines = []
        for worker in sorted(self._workers.values(), key=lambda w: w.hello.worker):
            hello = worker.hello
            busy = sum(len(b.jobs) for b in worker.batches)
            state = f"{busy} job(s)" if busy else "idle" if hello.accepting else "leaving"
            lines.append(f"`{hello.worker}` ({', '.join(hello.devices)}; {len(hello.models)} models; {state})")
        return lines

    async def wait_for_workers(self, count: int) -> None:
        """Until `count` workers are connected (the caller bounds the wait)."""
        while len(self._workers) < count:
            self._joined.clear()
            await self._joined.wait()

    # -- scheduling (all on the event loop: no locks) ------------------------------------------------------------

    def _holders(self, model: str) -> list[_Worker]:
        wanted = self._model_hash(model)
        return [
            w
            for w in self._workers.values()
            if (m := w.hello.model(model)) is not None and (wanted is None or m.hash in (None, wanted))
        ]

    def _dispatch(self) -> None:
        """Hand out work while a worker has a free slot: each free worker picks as in-process (fair order, its
        loaded models first within the affinity window); the pick earliest in fair order goes first, to a worker
        that has its model loaded if one does, else to the one with the most free memory. Compatible waiting jobs
        join it, up to the worker's batch size."""
        if self._clock() < self._send_blocked_until:
            return  # Redis just refused a hand-over: the reaper tries again shortly
        while self._room:
            best: tuple[tuple[int, bool, int, int], _Worker, Pick[_Entry]] | None = None
            for worker in self._workers.values():
                if self._free_slots(worker) <= 0:
                    continue
                pick = self._room.pick(worker.hello.loaded, lambda e: worker in self._holders(e.job.params.model))  # noqa: B023
                if pick is None:
                    continue
                rank = (
                    pick.rank,
                    pick.entry.job.params.model not in worker.hello.loaded,
                    -(worker.hello.free_memory or 0),
                    len(worker.batches),
                )
                if best is None or rank < best[0]:
                    best = (rank, worker, pick)
            if best is None:
                return
            _, worker, pick = best
            self._assign(worker, self._room.take(pick, worker.hello.max_images))

    def _free_slots(self, worker: _Worker) -> int:
        if not worker.hello.accepting:
            return 0
        ours = {job_id for batch in worker.batches for job_id in batch.jobs}
        foreign = any(job_id not in ours for job_id in worker.hello.running)  # e.g. from before a bot restart
        return worker.hello.slots - len(worker.batches) - int(foreign)

    def _assign(self, worker: _Worker, entries: list[_Entry]) -> None:
        batch = _Batch(
            {e.job.job_id for e in entries}, sum(e.plan.cost() for e in entries), entries[0].job.params.model, 0.0
        )
        batch.sent_at = self._clock()
        worker.batches.append(batch)
        model = worker.hello.model(entries[0].job.params.model)
        digest = self._model_hash(entries[0].job.params.model) or (model.hash if model else None)
        for entry in entries:
            entry.send_to(worker.key)
        log.info("job(s) %s sent to %s", " ".join(e.job.job_id for e in entries), worker.label)
        running = {e.job.job_id: json.dumps({"worker": worker.key}) for e in entries}
        self._send(worker.key, [encode_job(e.job, digest) for e in entries], running=running, batch=batch)

    async def _attach_images(self, entries: list[dict[str, bytes]]) -> list[dict[str, bytes]]:
        """Each img2img job with its init image (a worker has not got the bot's uploads); a job whose image is
        gone fails here, with the message the in-process path gives."""
        ready = []
        for fields in entries:
            entry = self._by_id.get(fields["job_id"].decode())
            digest = entry.job.params.init_image if entry is not None else None
            if entry is None or digest is None:
                ready.append(fields)
                continue
            try:
                if self._blobs is None:
                    raise InvalidParamsError("This bot keeps no uploads, so it cannot send init images to workers.")
                ready.append({**fields, "init_image": await asyncio.to_thread(self._blobs.get, digest)})
            except InvalidParamsError as err:
                self._finish(entry, Failed(err))
        return ready

    def _send(
        self,
        key: str,
        entries: list[dict[str, bytes]],
        *,
        running: Mapping[str, str] | None = None,
        batch: _Batch | None = None,
    ) -> None:
        async def send() -> None:
            try:
                ready = await self._attach_images(entries) if batch is not None else entries
                if not ready:
                    return
                async with self.redis.pipeline(transaction=True) as pipe:  # a batch arrives whole (MULTI)
                    for fields in ready:
                        pipe.xadd(key, dict(fields))
                    if running:
                        pipe.hset(RUNNING, mapping=dict(running))
                    await pipe.execute()
            except redis_errors() as err:
                log.warning("could not reach Redis to hand jobs to a worker (%s); they go back to the queue", err)
                self._send_blocked_until = self._clock() + 1.0
                if batch is not None:
                    self._requeue_batch(key, batch)

        task = asyncio.create_task(send())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def _requeue_batch(self, key: str, batch: _Batch) -> None:
        worker = self._workers.get(key)
        if worker is not None and batch in worker.batches:
            worker.batches.remove(batch)
        for job_id in batch.jobs:
            entry = self._by_id.get(job_id)
            if entry is not None and entry.worker == key:
                self._requeue(entry)
        self._dispatch()
        self._announce()

    def _requeue(self, entry: _Entry) -> None:
        """Back to the queue, at its old place (its seq): at the head, ahead of what came later."""
        if entry.state is JobState.CANCELLING:
            self._finish(entry, WasCancelled())
            return
        entry.back()
        self._room.requeue(entry)

    def _drop(self, entry: _Entry) -> None:
        self._room.drop(entry)
        self._by_id.pop(entry.job.job_id, None)

    def _finish(self, entry: _Entry, event: JobEvent) -> None:
        self._drop(entry)
        self._done[entry.job.job_id] = None
        while len(self._done) > DONE_REMEMBERED:
            self._done.popitem(last=False)
        self._release(entry, finished=isinstance(event, Finished))
        entry.end()
        self._emit(entry, event)
        task = asyncio.create_task(self._forget(entry.job.job_id))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _forget(self, job_id: str) -> None:
        with contextlib.suppress(*redis_errors()):
            await self.redis.hdel(RUNNING, job_id)

    async def _recorded_holder(self, job_id: str) -> str | None:
        """The worker run (jobs key) the job was last given to, as recorded in Redis: after a bot restart, the
        one whose result counts, and that may still be running it."""
        try:
            raw = await self.redis.hget(RUNNING, job_id)
            key = json.loads(raw)["worker"] if raw is not None else None
        except redis_errors():
            return None
        except (ValueError, KeyError, TypeError):
            return None
        return key if isinstance(key, str) else None

    # -- what the workers say -----------------------------------------------------------------------------------

    async def _read_hellos(self) -> None:
        replies = await self.redis.xread({HELLO: self._hello_from}, count=100, block=1000)
        now = self._clock()
        if now - self._hello_ok > 3.0:  # the bot itself could not hear anyone: nobody's silence counts till now
            self._reachable_since = now
        self._hello_ok = now
        for entry_id, fields in stream_entries(replies):
            self._hello_from = entry_id
            self._heard(fields, seen=self._clock())
        self._models_changed()

    def _heard(self, fields: dict[str, bytes], *, seen: float, quiet: bool = False) -> None:
        try:
            hello = decode_hello(fields)
        except WireError as err:
            log.warning("dropped a malformed heartbeat: %s", err)
            return
        key = jobs_key(hello.worker, hello.boot)
        worker = self._workers.get(key)
        if worker is None:
            if key in self._replaced:
                if self._replaced[key]:
                    log.error(
                        "two workers are named %s (runs %s and another); give each its own EASEL_WORKER_NAME. "
                        "This one gets no jobs.",
                        hello.worker,
                        hello.boot,
                    )
                    self._replaced[key] = False
                return
            for other in [w for w in self._workers.values() if w.hello.worker == hello.worker]:
                self._lost(other, "it restarted", replaced=True)  # the same machine, a new run: its old jobs are gone
                self._replaced[other.key] = True
                while len(self._replaced) > 1000:
                    self._replaced.pop(next(iter(self._replaced)))
            worker = self._workers[key] = _Worker(hello, seen)
            self._joined.set()
            if not quiet:
                log.info(
                    "worker %s connected: %s, %d model(s)", worker.label, ", ".join(hello.devices), len(hello.models)
                )
        else:
            worker.hello, worker.seen = hello, max(worker.seen, seen)
        if not hello.accepting and not worker.batches:
            del self._workers[key]  # it said goodbye, and holds nothing of ours
            if not quiet:
                log.info("worker %s left", worker.label)
            return
        if not quiet:
            self._dispatch()

    def _remember(self, fields: dict[str, bytes]) -> None:
        try:
            hello = decode_hello(fields)
        except WireError:
            return
        for m in hello.models:
            self._catalog[m.name] = m

    def _models_changed(self) -> None:
        """Tell the registry the models of the fleet: those connected workers hold, and those workers away now
        held when last heard (a restarted bot still knows them, so their jobs wait instead of being refused)."""
        models: dict[str, WorkerModel] = {}
        hashes: dict[str, set[str | None]] = {}
        for worker in self._workers.values():
            for m in worker.hello.models:
                models.setdefault(m.name, m)
                hashes.setdefault(m.name, set()).add(m.hash)
        if models != self._advertised:
            for name, seen in hashes.items():
                if len(seen) > 1:
                    log.warning(
                        "workers hold different files named %s (hashes %s): a job may draw with either; "
                        "give them one file, or different names",
                        name,
                        ", ".join(sorted(h or "none" for h in seen)),
                    )
            self._advertised = models
            self._catalog.update(models)
            if self._on_models is not None:
                self._on_models(dict(self._catalog))
            self._announce()

    async def _drain_results(self) -> None:
        while await self._read_results(block=False):
            pass

    async def _read_results(self, *, block: bool = True) -> int:
        """Read, handle and acknowledge a round of results; how many there were."""
        from redis.exceptions import ResponseError

        try:
            # First what this consumer read but did not acknowledge (a bot that stopped mid-way), then the new.
            count = 0
            for start in ("0", ">"):
                replies = await self.redis.xreadgroup(
                    BOT_GROUP, "bot", {RESULTS: start}, count=8, block=1000 if start == ">" and block else None
                )
                for entry_id, fields in stream_entries(replies):
                    count += 1
                    if fields:
                        self._on_result(fields)
                    await self.redis.xack(RESULTS, BOT_GROUP, entry_id)
                    await self.redis.xdel(RESULTS, entry_id)
            return count
        except ResponseError as err:
            if "NOGROUP" not in str(err):
                raise
            await self._ensure_group()  # Redis came back without its data
            return 0

    def _on_result(self, fields: dict[str, bytes]) -> None:
        try:
            job_id = event_job_id(fields)
        except WireError as err:
            log.warning("dropped a malformed result: %s", err)
            return
        entry = self._by_id.get(job_id)
        if entry is not None:
            self._result(entry, fields)
        elif job_id in self._done:
            log.info("job %s: a second result (another worker ran it too) dropped", job_id)
        else:
            # Kept for a job the restarted bot has yet to submit again; bounded in count and in bytes.
            self._orphans[job_id] = fields
            self._orphan_bytes += _size(fields)
            while len(self._orphans) > ORPHANS or self._orphan_bytes > ORPHAN_BYTES:
                _, old = self._orphans.popitem(last=False)
                self._orphan_bytes -= _size(old)

    def _result(self, entry: _Entry, fields: dict[str, bytes]) -> None:
        try:
            event = decode_event(fields, entry.job)
            origin = jobs_key(*sender(fields))
        except WireError as err:
            log.warning("job %s: dropped a malformed result: %s", entry.job.job_id, err)
            return
        if not isinstance(event, TERMINAL_EVENTS):
            return
        if origin not in entry.held_by:
            log.warning("job %s: a result from %s, which was never given the job, dropped", entry.job.job_id, origin)
            return
        if isinstance(event, WasCancelled) and entry.state is not JobState.CANCELLING:
            # The worker gave the job back (it is shutting down): another runs it.
            if entry.worker == origin:
                log.info("job %s given back by %s", entry.job.job_id, origin)
                leaving = self._workers.get(origin)
                if leaving is not None:  # it is shutting down: nothing more for it
                    leaving.hello = dataclasses.replace(leaving.hello, accepting=False)
                self._release(entry)
                self._requeue(entry)
                self._dispatch()
                self._announce()
            return
        if entry.worker is not None and entry.worker != origin:
            # Another worker had it too (this one was thought dead): the first result wins; stop the other.
            other = self._workers.get(entry.worker)
            if other is not None:
                self._send(other.key, [{"kind": b"cancel", "job_id": entry.job.job_id.encode()}])
            self._release(entry)
            entry.worker = origin if origin in self._workers else None
        log.info("job %s: %s from %s", entry.job.job_id, type(event).__name__.lower(), origin)
        self._finish(entry, event)
        self._dispatch()
        self._announce()

    def _release(self, entry: _Entry, *, finished: bool = False) -> None:
        """Free the slot the job took on its worker; the last of a batch to finish times the worker's speed."""
        worker = self._workers.get(entry.worker or "")
        if worker is None:
            return
        for batch in list(worker.batches):
            if entry.job.job_id not in batch.jobs:
                continue
            batch.jobs.discard(entry.job.job_id)
            if not batch.jobs:
                worker.batches.remove(batch)
                if finished:
                    worker.times.record(batch.model, batch.cost, self._clock() - batch.sent_at)

    async def _read_progress(self) -> None:
        replies = await self.redis.xread({PROGRESS: self._progress_from}, count=200, block=1000)
        for entry_id, fields in stream_entries(replies):
            self._progress_from = entry_id
            self._on_progress(fields)

    def _on_progress(self, fields: dict[str, bytes]) -> None:
        try:
            entry = self._by_id.get(event_job_id(fields))
            if entry is None or entry.worker != jobs_key(*sender(fields)):
                return  # finished, or from a worker that no longer holds it
            event = decode_event(fields, entry.job)
        except WireError as err:
            log.warning("dropped a malformed progress entry: %s", err)
            return
        if isinstance(event, Started | Progress) and entry.start():
            self._emit(entry, Started())
        if isinstance(event, Progress):
            self._emit(entry, event)

    # -- dead workers -------------------------------------------------------------------------------------------

    async def _reap(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), max(self.timeout / 5, 0.2))
        now = self._clock()
        for worker in list(self._workers.values()):
            silent = now - max(worker.seen, self._reachable_since)
            if silent > self.timeout:
                self._lost(worker, f"no heartbeat for {silent:.0f} s")
                with contextlib.suppress(*redis_errors()):
                    await self.redis.delete(worker.key)
                continue
            if now - self._reachable_since <= self.timeout:
                continue  # after an outage, entries look idle until their workers have had time to refresh them
            # Entries its worker stopped refreshing: the process lives (it still beats) but the job is stuck or lost.
            reply = await self.redis.xautoclaim(
                worker.key, WORKER_GROUP, "reaper", min_idle_time=int(self.timeout * 1000), count=100
            )
            for entry_id, fields in entry_list(reply[1]):
                await self.redis.xack(worker.key, WORKER_GROUP, entry_id)
                job_id = fields.get("job_id", b"").decode(errors="replace")
                entry = self._by_id.get(job_id)
                if entry is not None and entry.worker == worker.key:
                    log.warning("job %s: %s stopped reporting on it; it goes to another worker", job_id, worker.label)
                    self._release(entry)
                    self._requeue(entry)
        self._models_changed()
        self._dispatch()
        self._announce()

    def _lost(self, worker: _Worker, why: str, *, replaced: bool = False) -> None:
        del self._workers[worker.key]
        jobs = [e for e in self._by_id.values() if e.worker == worker.key]
        log.warning("worker %s lost (%s); %d job(s) go back to the queue", worker.label, why, len(jobs))
        for entry in jobs:
            self._requeue(entry)
        if not replaced:
            # Another live run of this name, shut out while this one held the name, takes it at its next beat.
            prefix = jobs_key(worker.hello.worker, "")
            for key in [k for k in self._replaced if k.startswith(prefix)]:
                del self._replaced[key]
        self._models_changed()

    # -- what the jobs hear -------------------------------------------------------------------------------------

    def _emit(self, entry: _Entry, event: JobEvent) -> None:
        entry.events.put_nowait(event)

    def _slots(self) -> list[tuple[float, float]]:
        """(seconds until free, seconds per unit of cost) of every connected worker's slots; a worker that has not
        run a job yet is taken to be as fast as the others' mean (none known: no ETA at all)."""
        rates = {key: w.times.rate() or w.hello.speed for key, w in self._workers.items()}
        known = [r for r in rates.values() if r is not None]
        fallback = sum(known) / len(known) if known else None
        now = self._clock()
        slots: list[tuple[float, float]] = []
        for key, worker in self._workers.items():
            rate = rates[key] or fallback
            if rate is None:
                continue
            busy = sorted(max(b.cost * rate - (now - b.sent_at), 0.0) for b in worker.batches)[: worker.hello.slots]
            slots += [(free, rate) for free in busy + [0.0] * (worker.hello.slots - len(busy))]
        return slots

    def _etas(self, order: list[_Entry]) -> list[float | None]:
        slots = self._slots()
        if not slots:
            return [None] * len(order)
        return list(finish_times_on([s[0] for s in slots], [s[1] for s in slots], [e.plan.cost() for e in order]))

    def _first_free(self, user_id: str) -> float | None:
        order = self._room.order()
        etas = self._etas(order)
        return min(
            (eta for entry, eta in zip(order, etas, strict=True) if eta is not None and entry.job.user_id == user_id),
            default=None,
        )

    def _announce(self) -> None:
        order = self._room.order()
        etas = self._etas(order)
        running = sum(1 for e in self._by_id.values() if e.state in ON_A_WORKER)
        for place, (entry, eta) in enumerate(zip(order, etas, strict=True), start=1):
            waiting = None
            if not self._holders(entry.job.params.model):
                waiting = (
                    f"No GPU worker connected has the model {entry.job.params.model}; "
                    "it starts when one that has it connects."
                    if self._workers
                    else "No GPU worker is connected; it starts when one connects."
                )
            self._emit(entry, Queued(position=place, ahead=place - 1 + running, eta_seconds=eta, waiting_for=waiting))


def _ms(redis_time: tuple[int, int] | list[int]) -> int:
    seconds, micros = redis_time
    return int(seconds) * 1000 + int(micros) // 1000


def _size(fields: Mapping[str, bytes]) -> int:
    return sum(len(value) for value in fields.values())
