"""`python main.py worker` as real processes on the built-in tiny model, over a real redis-server: what an owner runs
on a second machine, killed as a crash (or a pulled cable) kills."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.images import check_upload
from engine.jobs import Finished
from engine.models.registry import ModelRegistry
from engine.remote.pool import JobState, RemotePool
from engine.remote.transport import connect
from engine.remote.worker import default_worker_name
from tests.engine.remote_helpers import following, job, until_workers
from tests.waiting import wait_until
from tools.redis_server import RedisServer, redis_binary

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(redis_binary() is None, reason="redis-server is not installed here (.ci/run installs it)"),
]


async def start_worker_process(tmp_path: Path, url: str, log_name: str) -> asyncio.subprocess.Process:
    """`python main.py worker` with no name set: both processes on this host name themselves."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EASEL_")}
    env.update(
        HF_HUB_OFFLINE="1",
        EASEL_REDIS_URL=url,
        EASEL_WORKER_TIMEOUT="3",
        EASEL_DEVICE="cpu",
        EASEL_DATA_DIR=str(tmp_path / "data"),
        EASEL_MODELS_DIR=str(tmp_path / "models"),
        EASEL_DEFAULT_MODEL="builtin:tiny",
    )
    log = (tmp_path / f"{log_name}.log").open("ab")
    return await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "main.py"), "worker", cwd=tmp_path, env=env, stdout=log, stderr=log
    )


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[RemotePool, dict[str, asyncio.subprocess.Process]]]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    (tmp_path / "models").mkdir()
    started = [await start_worker_process(tmp_path, server.url, log_name) for log_name in ("w1", "w2")]
    workers = {default_worker_name(socket.gethostname(), process.pid): process for process in started}
    registry = ModelRegistry(tmp_path / "models", tmp_path / "data" / "cache")
    pool = RemotePool(
        connect(server.url),
        planner=registry.plan,
        max_queued_per_user=20,
        max_queued_total=50,
        model_hash=registry.known_hash,
        timeout=3.0,
        on_models=registry.set_remote,
    )
    await pool.start()
    try:
        yield pool, workers
    finally:
        await pool.close()
        for process in workers.values():
            if process.returncode is None:
                process.kill()
                await process.wait()
        server.stop()


async def test_two_worker_processes_and_one_killed_mid_job(
    setup: tuple[RemotePool, dict[str, asyncio.subprocess.Process]], tmp_path: Path
) -> None:
    pool, workers = setup
    await until_workers(pool, 2, limit_s=180)
    assert {h.worker for h in pool.workers()} == set(workers)  # two names, though started alike on one host
    assert all(h.model("builtin:tiny") is not None for h in pool.workers())
    outcomes, follows = zip(
        *[
            await following(
                pool, job(f"00b{n:03x}", f"a lighthouse {n}", user=str(n + 1), model="builtin:tiny", steps=30)
            )
            for n in range(4)
        ],
        strict=True,
    )
    first = pool._by_id["00b000"]
    await wait_until(lambda: first.state is JobState.RUNNING, limit_s=60, what="the first job to start on a worker")
    assert first.worker is not None
    victim = first.worker.split(":")[2]
    workers[victim].send_signal(signal.SIGKILL)  # kill -9, mid-job
    await workers[victim].wait()
    await asyncio.wait_for(asyncio.gather(*follows), 120)
    for outcome in outcomes:
        assert [type(e) for e in outcome.events].count(Finished) == 1
        finished = outcome.last
        assert isinstance(finished, Finished)
        png = finished.result.images[0].png
        assert check_upload(png, max_bytes=1 << 20, max_pixels=1 << 20)[:3] == ("PNG", 64, 64)
        assert "Seed: 42" in finished.result.infotext and "builtin:tiny" in finished.result.infotext
    [survivor] = [name for name in workers if name != victim]
    log = (tmp_path / f"w{list(workers).index(survivor) + 1}.log").read_text()
    assert "job 00b000 started" in log  # the killed worker's job ran again on the other one
    # The pool forgets the dead one (its last heartbeat, still in Redis, may be read once more before it ages out).
    await wait_until(lambda: [h.worker for h in pool.workers()] == [survivor], limit_s=30, what="the dead worker gone")
