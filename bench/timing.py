"""What every benchmark measures with: one thread at a time running torch, medians, whole jobs through the executor.

libgomp (PyTorch's OpenMP on Linux) spins only briefly when it manages more threads than there are CPUs: as soon as
two threads have run torch ops while both are alive, every later op in either pays a wake-up, and on a 2-core CPU a
small model runs ~2.7x slower. The bot never has that (torch runs on the executor's worker threads only), so a
benchmark must not have it either: its direct torch calls run `on_thread`, a thread that ends with the call, and
never while an executor's worker is alive.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from engine.executor import GpuExecutor
from engine.jobs import Failed, Finished, Job, WasCancelled
from engine.params import GenerationParams

T = TypeVar("T")


def on_thread(fn: Callable[[], T]) -> T:
    """`fn()` on a new thread that ends when it returns (see the module's note); its exception is raised here."""
    result: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=run, name="bench-torch")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def timed(fn: Callable[[], object], repeats: int = 3) -> float:
    """Median seconds of `repeats` calls after one warm-up call, all on one thread of their own."""

    def run() -> float:
        fn()
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    return on_thread(run)


def in_turns(first: Callable[[], object], second: Callable[[], object], repeats: int = 3) -> tuple[float, float]:
    """Median seconds of each, timed in turns (first, second, first, ...) after one warm-up call of each."""

    def run() -> tuple[float, float]:
        samples: tuple[list[float], list[float]] = ([], [])
        for n in range(repeats + 1):
            for fn, out in ((first, samples[0]), (second, samples[1])):
                started = time.perf_counter()
                fn()
                if n:
                    out.append(time.perf_counter() - started)
        return statistics.median(samples[0]), statistics.median(samples[1])

    return on_thread(run)


async def run_jobs(executor: GpuExecutor, jobs: list[GenerationParams], tag: str) -> float:
    """Seconds from submitting every job at once (one user each) until the last has finished."""
    started = time.perf_counter()
    tickets = [await executor.submit(Job(f"{tag}{i}", f"user{i}", p)) for i, p in enumerate(jobs)]
    for ticket in tickets:
        async for event in ticket.events:
            if isinstance(event, Failed | WasCancelled):
                raise RuntimeError(f"benchmark job failed: {event}")
            if isinstance(event, Finished):
                break
    return time.perf_counter() - started


async def executor_run(executor: GpuExecutor, jobs: list[GenerationParams], tag: str) -> float:
    """`run_jobs` on an executor started for it and closed after, so that its worker thread ends with the run."""
    await executor.start()
    try:
        return await run_jobs(executor, jobs, tag)
    finally:
        await executor.close()


def machine() -> dict[str, object]:
    """What every benchmark's figures were measured on, first in its report."""
    import platform

    import torch

    return {"device": "cpu", "torch": torch.__version__, "threads": torch.get_num_threads(),
            "platform": platform.platform()}  # fmt: skip


def report(results: dict[str, object], out: str) -> None:
    """Print a benchmark's figures, one per line, and write them to `out` as JSON."""
    import json
    from pathlib import Path

    width = max(len(key) for key in results) + 2
    for key, value in results.items():
        print(f"{key:{width}} {value:.3f}" if isinstance(value, float) else f"{key:{width}} {value}")
    Path(out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
