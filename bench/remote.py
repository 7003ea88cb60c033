"""GPU workers through Redis against the in-process executor, on one machine (a real redis-server on loopback).

    python -m bench.remote [--jobs 24] [--steps 20] [--size 64] [--out bench/remote.json]

1. Throughput (the median of 3 runs): jobs per minute on `builtin:tiny` with 1, 2 and 4 `python main.py worker`
   processes (CPU, the machine's threads shared out between them) against the in-process executor in this process
   (all threads).
2. Added latency: the median time from submit to result of a job that takes no time at all (an instant engine),
   through Redis (RemotePool -> RemoteWorker) minus the same through the in-process executor: what the transport
   costs per job. Goal: at most 20 ms.
On one machine, more workers only share the same cores: the figure to read is that the Redis path keeps the
in-process throughput (ratio ~1) while adding workers elsewhere adds their devices.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from PIL import Image

from engine.executor import GpuExecutor
from engine.jobs import TERMINAL_EVENTS, Executor, Finished, Job
from engine.models.registry import ModelRegistry
from engine.params import GenerationParams
from engine.pipeline import CancelledFn, DiffusersEngine, ProgressFn, RawImage
from engine.plan import GenerationPlan, make_plan
from engine.previews import PreviewFn
from engine.remote.pool import RemotePool
from engine.remote.transport import connect
from engine.remote.worker import RemoteWorker
from tools.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 3  # each throughput figure is the median of this many runs (a shared machine drifts)


def params(n: int, steps: int, size: int) -> GenerationParams:
    return GenerationParams(
        prompt=f"a red circle on a blue background {n}",
        model="builtin:tiny",
        seed=n,
        steps=steps,
        sampler="Euler",
        width=size,
        height=size,
        cfg_scale=5.0 + n * 0.05,  # no cross-job batching: the comparison is of transports, not of batching
    )


async def run_jobs(executor: Executor, jobs: list[Job]) -> float:
    """Seconds for all jobs, submitted at once; each must finish."""
    start = time.perf_counter()
    tickets = [await executor.submit(job) for job in jobs]

    async def last(ticket: Any) -> None:
        async for event in ticket.events:
            if isinstance(event, TERMINAL_EVENTS):
                assert isinstance(event, Finished), event

    await asyncio.gather(*(last(t) for t in tickets))
    return time.perf_counter() - start


def jobs_for(tag: str, count: int, steps: int, size: int) -> list[Job]:
    return [Job(f"{tag}{n:06x}", str(n % 8 + 1), params(n, steps, size), None) for n in range(count)]


async def in_process(folder: Path, count: int, steps: int, size: int) -> float:
    registry = ModelRegistry(folder / "models", folder / "data" / "cache")
    executor = GpuExecutor(
        DiffusersEngine(registry, "cpu"),
        max_queued_per_user=1000,
        max_queued_total=1000,
        preview_interval=None,
        planner=registry.plan,
    )
    await run_jobs(executor, jobs_for("a0", 2, steps, size))  # load and warm up
    seconds = statistics.median(
        [await run_jobs(executor, jobs_for(f"a{r + 1}", count, steps, size)) for r in range(REPEATS)]
    )
    await executor.close()
    return seconds


async def through_workers(folder: Path, url: str, workers: int, count: int, steps: int, size: int) -> float:
    threads = max(1, (os.cpu_count() or 1) // workers)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EASEL_")}
    env.update(
        EASEL_REDIS_URL=url,
        EASEL_DEVICE="cpu",
        EASEL_DATA_DIR=str(folder / "data"),
        EASEL_MODELS_DIR=str(folder / "models"),
        EASEL_DEFAULT_MODEL="builtin:tiny",
        EASEL_LOG_LEVEL="WARNING",
        OMP_NUM_THREADS=str(threads),
    )
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "main.py"),
            "worker",
            env={**env, "EASEL_WORKER_NAME": f"bench{n}"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in range(workers)
    ]
    registry = ModelRegistry(folder / "models", folder / "data" / "cache")
    pool = RemotePool(connect(url), planner=registry.plan, max_queued_per_user=1000, max_queued_total=1000)
    try:
        await pool.start()
        await asyncio.wait_for(pool.wait_for_workers(workers), 300)
        await run_jobs(pool, jobs_for(f"b{workers}0", 2 * workers, steps, size))  # every worker warm
        return statistics.median(
            [await run_jobs(pool, jobs_for(f"b{workers}{r + 1}", count, steps, size)) for r in range(REPEATS)]
        )
    finally:
        await pool.close()
        for process in processes:
            process.terminate()
        for process in processes:
            await process.wait()


class InstantEngine:
    def generate(
        self,
        plan: GenerationPlan,
        *,
        on_step: ProgressFn | None = None,
        is_cancelled: CancelledFn | None = None,
        on_preview: PreviewFn | None = None,
    ) -> list[RawImage]:
        return [RawImage(Image.new("RGB", (plan.width, plan.height)), plan.params.seed, "x\nSeed: 1")]


def instant_executor() -> GpuExecutor:
    return GpuExecutor(
        InstantEngine(), max_queued_per_user=1000, max_queued_total=1000, preview_interval=None, planner=make_plan
    )


async def latencies(executor: Executor, tag: str, count: int) -> list[float]:
    """Submit-to-result seconds of `count` instant jobs, one after another (a job alone in the queue)."""
    out = []
    for n in range(count):
        job = Job(f"{tag}{n:06x}", "1", params(n, 1, 64).replace(model="instant"), None)
        out.append(await run_jobs(executor, [job]))
    return out


class InstantModels:
    """A worker's models folder holding only the instant model."""

    @dataclass
    class Entry:
        name: str = "instant"
        kind: str = "single-file"
        usable: bool = True
        family: str = "sd1"
        latent_scale: int = 8
        context_width: int | None = None

    def entries(self) -> list[InstantModels.Entry]:
        return [self.Entry()]

    def model_hash(self, entry: object) -> str | None:
        return None

    def known_hash(self, name: str) -> str | None:
        return None


async def added_latency(url: str, count: int) -> tuple[float, float]:
    """Median milliseconds of an instant job in-process and through Redis (bot pool and worker in this process)."""
    local = instant_executor()
    await latencies(local, "c0", 10)
    base = statistics.median(await latencies(local, "c1", count))
    await local.close()
    stop = asyncio.Event()
    worker = RemoteWorker(
        connect(url),
        instant_executor(),
        cast("ModelRegistry", InstantModels()),
        name="instant",
        devices=["cpu"],
        max_images=1,
    )
    running = asyncio.create_task(worker.run(stop))
    pool = RemotePool(connect(url), planner=make_plan, max_queued_per_user=1000, max_queued_total=1000)
    await pool.start()
    await asyncio.wait_for(pool.wait_for_workers(1), 30)
    await latencies(pool, "d0", 10)
    remote = statistics.median(await latencies(pool, "d1", count))
    await pool.close()
    stop.set()
    await running
    return base * 1000, remote * 1000


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.remote")
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--out", default=str(ROOT / "bench" / "remote.json"))
    args = parser.parse_args()
    results = asyncio.run(run(args))
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "models").mkdir()
        server = RedisServer(folder / "redis")
        server.start()
        try:
            results: dict[str, Any] = {"jobs": args.jobs, "steps": args.steps, "size": args.size}
            base = await in_process(folder, args.jobs, args.steps, args.size)
            results["in_process_jobs_per_min"] = round(60 * args.jobs / base, 1)
            print(f"in-process executor      {60 * args.jobs / base:7.1f} jobs/min  (1.00x)")
            for workers in (int(w) for w in args.workers.split(",")):
                seconds = await through_workers(folder, server.url, workers, args.jobs, args.steps, args.size)
                rate = 60 * args.jobs / seconds
                results[f"workers_{workers}_jobs_per_min"] = round(rate, 1)
                results[f"workers_{workers}_ratio"] = round(base / seconds, 2)
                print(f"{workers} worker process(es)    {rate:7.1f} jobs/min  ({base / seconds:.2f}x)")
            local_ms, remote_ms = await added_latency(server.url, 50)
            results.update(
                instant_in_process_ms=round(local_ms, 2),
                instant_remote_ms=round(remote_ms, 2),
                added_latency_ms=round(remote_ms - local_ms, 2),
            )
            print(
                f"added latency per job    {remote_ms - local_ms:7.2f} ms "
                f"(instant job: {local_ms:.2f} ms in-process, {remote_ms:.2f} ms through Redis)"
            )
        finally:
            server.stop()
    results["cpus"] = os.cpu_count()
    return results


if __name__ == "__main__":
    main()
