"""A load run: many users' `/imagine` through the Discord stand-in, discord.py and the bot, onto a real GpuExecutor
with the `builtin:tiny` engine (batching on, previews at their default, edits at their production interval).

Every job is sent while the worker is held on the first one, each user's jobs in a row, so that the run starts with
the whole queue waiting in the order a FIFO bot would serve worst. Then it checks what users would notice: each job
delivered exactly once (none lost, none twice), the start order fair (users take turns), the event loop's lag
(sampled every 10 ms for the whole run), how fast each interaction was acknowledged, and the process's memory.

    python -m bench.load            # 500 jobs from 100 users, the issue's figures; writes bench/load.json
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bot.runner import EDIT_INTERVAL
from main import settle_heap
from tests.bot.harness import Harness, make_settings
from tests.bot.standin import Standin, StandinUser

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT = re.compile(r"user (\d+) job (\d+)")
LAG_TICK = 0.01


@dataclass
class LoadReport:
    users: int
    jobs_per_user: int
    sent: int = 0
    finished_once: int = 0
    lost: int = 0
    duplicated: int = 0
    refused: int = 0
    open_in_store: int = 0
    max_turn_skew: int = 0  # most starts one waiting user was ahead of another at any point (fair: 1)
    lag_ms: dict[str, float] = field(default_factory=dict)  # p50, p95, p99, max
    ack_ms: dict[str, float] = field(default_factory=dict)  # interaction to its callback: p50, p99, max
    rss_mb: dict[str, float] = field(default_factory=dict)  # start (engine loaded), peak, end
    seconds: float = 0.0
    jobs_per_second: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Recording:
    """The engine as the executor sees it, recording the order jobs start in and holding the first until
    `release` is set (so the whole queue is waiting when the worker starts on it)."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.release = threading.Event()
        self.started: list[tuple[int, int]] = []  # (user, job) in start order
        self.first = threading.Event()  # a measured job has reached the engine

    def _record(self, plans: Sequence[Any]) -> None:
        for plan in plans:
            found = PROMPT.search(plan.params.prompt)
            if found is not None:  # not the warm-up job
                self.started.append((int(found[1]), int(found[2])))
                self.first.set()
        self.release.wait()

    def generate(self, plan: Any, **hooks: Any) -> Any:
        self._record([plan])
        return self._engine.generate(plan, **hooks)

    def generate_batch(self, plans: Sequence[Any], hooks: Sequence[Any]) -> Any:
        self._record(plans)
        return self._engine.generate_batch(plans, hooks)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _summary(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}
    return {
        "p50": round(statistics.median(ordered), 2),
        "p95": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 2),
        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
        "max": round(ordered[-1], 2),
    }


def turn_skew(started: Sequence[tuple[int, int]], jobs: dict[int, int]) -> int:
    """The most starts by which one user was ahead of another user who still had a job waiting, over every
    prefix of the start order (round-robin gives 1)."""
    served: Counter[int] = Counter()
    worst = 0
    for user, _ in started:
        served[user] += 1
        waiting = [served[u] for u in jobs if served[u] < jobs[u]]
        if waiting:
            worst = max(worst, max(served.values()) - min(waiting))
    return worst


async def run_load(users: int, jobs_per_user: int, data_dir: Path, *, max_batch_images: int = 4) -> LoadReport:
    from engine.executor import GpuExecutor
    from engine.models.registry import ModelRegistry
    from engine.pipeline import DiffusersEngine

    report = LoadReport(users, jobs_per_user)
    (data_dir / "models").mkdir(parents=True, exist_ok=True)
    registry = ModelRegistry(data_dir / "models", data_dir / "cache")
    engine = _Recording(DiffusersEngine(registry, "cpu"))
    executor = GpuExecutor(
        engine,
        max_queued_per_user=jobs_per_user,
        max_queued_total=users * jobs_per_user,
        max_batch_images=max_batch_images,
        warm_up="builtin:tiny",  # loaded (on the worker thread) before the first job reaches the engine
    )
    await executor.start()
    standin = Standin()
    await standin.start()
    settings = make_settings(standin, data_dir / "data")
    rig = Harness(standin, settings, executor, registry, edit_interval=EDIT_INTERVAL)
    await rig.start()
    rss: list[float] = []
    lags: list[float] = []
    stop = asyncio.Event()

    async def watch() -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(LAG_TICK)
            lags.append((loop.time() - before - LAG_TICK) * 1000)
            if rss and len(lags) % 20 == 0:
                rss.append(_rss_mb())

    # A first job, before anything is measured: the model's first load and the libraries' first-use imports
    # happen once per process (at start-up when EASEL_WARM_UP names the model), not under every load.
    engine.release.set()
    warm = await standin.slash("imagine", StandinUser(2999999999999999999, "warm-up"), prompt="warm-up", steps=2)
    await rig.settle(warm)
    settle_heap()  # as main.py does once the bot is built
    engine.release.clear()
    engine.started.clear()
    standin.messages.clear()
    watcher = asyncio.create_task(watch())
    started_at = time.monotonic()
    sent_at: dict[str, float] = {}
    people = [StandinUser(3000000000000000000 + u, f"user{u}") for u in range(users)]
    try:
        for u, person in enumerate(people):
            for k in range(jobs_per_user):
                if u == 1 and k == 0:  # the first job holds the worker: the memory baseline
                    await asyncio.to_thread(engine.first.wait, 60)
                    rss.append(_rss_mb())
                sent_at_now = time.monotonic()
                handle = await standin.slash(
                    "imagine", person, prompt=f"user {u} job {k}", steps=2, width=64, height=64, seed=str(u * 100 + k)
                )
                sent_at[handle.token] = sent_at_now
                report.sent += 1
        await standin.wait_for(lambda r: r.path.endswith("/callback"), count=report.sent + 1, limit_s=120)
        engine.release.set()
        await rig.settle()
    finally:
        engine.release.set()
        report.seconds = round(time.monotonic() - started_at, 2)
        stop.set()
        await watcher
        assert rig.store is not None
        report.open_in_store = len(rig.store.open_jobs())
        await rig.stop()
        await executor.close()
        await standin.close()

    acks = [
        (r.at - sent_at[token]) * 1000
        for r in standin.requests
        if r.path.endswith("/callback") and (token := r.path.split("/")[-2]) in sent_at
    ]
    refused = [r for r in standin.requests if r.path.endswith("/callback") and r.json and r.json.get("type") == 4]
    report.refused = len(refused)
    delivered: Counter[tuple[int, int]] = Counter()
    for message in standin.messages.values():
        if message["attachments"] and message["content"].startswith("Done"):
            found = PROMPT.search(message["content"])
            if found:
                delivered[(int(found[1]), int(found[2]))] += 1
    expected = {(u, k) for u in range(users) for k in range(jobs_per_user)}
    report.finished_once = sum(1 for key in expected if delivered[key] == 1)
    report.lost = sum(1 for key in expected if delivered[key] == 0)
    report.duplicated = sum(count - 1 for count in delivered.values() if count > 1)
    report.max_turn_skew = turn_skew(engine.started, dict.fromkeys(range(users), jobs_per_user))
    report.lag_ms = _summary(lags)
    report.ack_ms = _summary(acks)
    report.rss_mb = {"start": round(rss[0], 1), "peak": round(max(rss), 1), "end": round(rss[-1], 1)}
    report.jobs_per_second = round(report.sent / report.seconds, 1) if report.seconds else 0.0
    return report


def main(users: int = 100, jobs_per_user: int = 5) -> LoadReport:
    with tempfile.TemporaryDirectory(prefix="easel-load-") as folder:
        return asyncio.run(run_load(users, jobs_per_user, Path(folder)))
