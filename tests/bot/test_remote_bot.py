"""The whole stack with a GPU worker elsewhere: stand-in Discord -> discord.py -> EaselBot -> RemotePool -> a real
redis-server -> a RemoteWorker (DiffusersEngine on `builtin:tiny`) -> back: the Discord layer does not know."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

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


@pytest.fixture
async def remote_harness(standin: Standin, tmp_path: Path) -> AsyncIterator[Harness]:
    from engine.executor import GpuExecutor
    from engine.models.registry import ModelRegistry
    from engine.pipeline import DiffusersEngine
    from engine.remote import RemotePool, connect
    from engine.worker import RemoteWorker

    server = RedisServer(tmp_path / "redis")
    server.start()
    (tmp_path / "models").mkdir()
    # The worker's machine: its own registry and engine. The bot's: a registry that learns the worker's models.
    worker_registry = ModelRegistry(tmp_path / "models", tmp_path / "worker-cache")
    local = GpuExecutor(
        DiffusersEngine(worker_registry, "cpu"),
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
    pool = RemotePool(
        connect(server.url),
        planner=registry.plan,
        max_queued_per_user=3,
        max_queued_total=10,
        model_hash=registry.known_hash,
        on_models=registry.set_remote,
    )
    await pool.start()
    await until_workers(pool, 1)
    rig = Harness(standin, make_settings(standin, tmp_path / "data"), pool, registry)
    await rig.start()
    yield rig
    await rig.stop()
    await pool.close()
    stop.set()
    await running
    server.stop()


async def test_imagine_through_a_remote_worker_uploads_the_png_with_its_parameters(remote_harness: Harness) -> None:
    standin = remote_harness.standin
    handle = await standin.slash(
        "imagine", ALICE, prompt="a lighthouse at dusk", seed="42", steps=3, width=64, height=64, model="builtin:tiny"
    )
    await remote_harness.settle(handle)
    final = [r for r in standin.sent(handle, "PATCH") if r.files][-1]
    [upload] = final.files
    image = Image.open(io.BytesIO(upload.data))
    assert image.format == "PNG" and image.size == (64, 64)
    assert "Seed: 42" in image.info["parameters"]
    assert "Seed: 42" in final.json["content"] and "Steps: 3" in final.json["content"]
