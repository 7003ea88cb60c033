"""The whole stack with a GPU worker elsewhere: stand-in Discord -> discord.py -> EaselBot -> RemotePool -> a real
redis-server -> a RemoteWorker (DiffusersEngine on `builtin:tiny`) -> back: the Discord layer does not know."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.bot.harness import ALICE, Harness, make_settings
from tests.bot.standin import Standin
from tests.engine.remote_helpers import until_workers
from tools.redis_server import RedisServer, redis_binary

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(redis_binary() is None, reason="redis-server is not installed here (.ci/run installs it)"),
]


@dataclass
class Remote:
    rig: Harness
    server: RedisServer
    registry: Any
    runs: list[str]  # the prompts the worker's engine drew, one entry per run

    def pool(self) -> Any:
        from engine.remote.pool import RemotePool
        from engine.remote.transport import connect

        return RemotePool(
            connect(self.server.url),
            planner=self.registry.plan,
            max_queued_per_user=3,
            max_queued_total=10,
            model_hash=self.registry.known_hash,
            on_models=self.registry.set_remote,
        )


@pytest.fixture
async def remote(standin: Standin, tmp_path: Path) -> AsyncIterator[Remote]:
    from engine.executor import GpuExecutor
    from engine.models.registry import ModelRegistry
    from engine.pipeline import DiffusersEngine
    from engine.remote.transport import connect
    from engine.remote.worker import RemoteWorker

    server = RedisServer(tmp_path / "redis")
    server.start()
    (tmp_path / "models").mkdir()
    runs: list[str] = []

    class CountingEngine(DiffusersEngine):
        def generate(self, plan: Any, **hooks: Any) -> Any:
            runs.append(plan.params.prompt)
            return super().generate(plan, **hooks)

    # The worker's machine: its own registry and engine. The bot's: a registry that learns the worker's models.
    worker_registry = ModelRegistry(tmp_path / "models", tmp_path / "worker-cache")
    local = GpuExecutor(
        CountingEngine(worker_registry, "cpu"),
        max_queued_per_user=64,
        max_queued_total=64,
        preview_interval=None,
        planner=worker_registry.plan,
    )
    worker = RemoteWorker(
        connect(server.url), local, worker_registry, name="gpu-box", devices=["cpu"], max_images=4, heartbeat=0.3
    )
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    registry = ModelRegistry(tmp_path / "models", tmp_path / "cache")
    remote = Remote(Harness(standin, make_settings(standin, tmp_path / "data"), None, registry), server, registry, runs)  # type: ignore[arg-type]
    remote.rig.executor = pool = remote.pool()
    await pool.start()
    await until_workers(pool, 1)
    await remote.rig.start()
    yield remote
    await remote.rig.stop()
    await remote.rig.executor.close()  # type: ignore[attr-defined]
    stop.set()
    await running
    server.stop()


async def test_imagine_through_a_remote_worker_uploads_the_png_with_its_parameters(remote: Remote) -> None:
    standin = remote.rig.standin
    handle = await standin.slash(
        "imagine", ALICE, prompt="a lighthouse at dusk", seed="42", steps=3, width=64, height=64, model="builtin:tiny"
    )
    await remote.rig.settle(handle)
    final = [r for r in standin.sent(handle, "PATCH") if r.files][-1]
    [upload] = final.files
    image = Image.open(io.BytesIO(upload.data))
    assert image.format == "PNG" and image.size == (64, 64)
    assert "Seed: 42" in image.info["parameters"]
    assert "Seed: 42" in final.json["content"] and "Steps: 3" in final.json["content"]
    assert remote.runs == ["a lighthouse at dusk"]
    # Nothing in Redis holds the bot's Discord token: a worker could not learn it.
    from engine.remote.transport import connect

    r = connect(remote.server.url)
    blobs = []
    for key in await r.keys("*"):
        kind = await r.type(key)
        if kind == b"stream":
            blobs += [v for _, fields in await r.xrange(key) for v in fields.values()]
        elif kind == b"hash":
            blobs += list((await r.hgetall(key)).values())
    assert blobs and not any(b"standin-token" in blob for blob in blobs)
    await r.aclose()


async def test_a_bot_restart_while_a_remote_worker_draws_posts_the_image_once(remote: Remote) -> None:
    standin = remote.rig.standin
    handle = await standin.slash(
        "imagine", ALICE, prompt="a lighthouse at dawn", seed="7", steps=150, width=64, height=64, model="builtin:tiny"
    )
    await standin.wait_for(lambda r: r.is_for(handle) and ("Starting" in str(r.json) or "step" in str(r.json)))
    await remote.rig.stop()  # the bot process ends; the job stays open in its store, and on the worker
    await remote.rig.executor.close()  # type: ignore[attr-defined]
    remote.rig.executor = pool = remote.pool()
    await pool.start()
    await remote.rig.start()
    await remote.rig.settle()
    posts = [r for r in standin.requests if r.files]
    assert len(posts) == 1 and posts[0].files[0].data.startswith(b"\x89PNG")
    assert remote.runs == ["a lighthouse at dawn"]  # drawn once: the restarted bot took the running job back
