"""One job through the whole stack: stand-in Discord -> discord.py -> EaselBot -> real GpuExecutor ->
DiffusersEngine on `builtin:tiny` (tiny, offline) -> a PNG upload whose metadata and text match."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from tests.bot.harness import ALICE, Harness, make_settings
from tests.bot.standin import Standin

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytestmark = pytest.mark.slow


@pytest.fixture
async def real_harness(standin: Standin, tmp_path: Path) -> AsyncIterator[Harness]:
    from engine.executor import GpuExecutor
    from engine.models.registry import ModelRegistry
    from engine.pipeline import DiffusersEngine

    (tmp_path / "models").mkdir()
    registry = ModelRegistry(tmp_path / "models", tmp_path / "cache")
    executor = GpuExecutor(DiffusersEngine(registry, "cpu"), max_queued_per_user=3, max_queued_total=10)
    await executor.start()
    rig = Harness(standin, make_settings(standin, tmp_path / "data"), executor, registry)
    await rig.start()
    yield rig
    await rig.stop()
    await executor.close()


async def test_imagine_on_builtin_tiny_uploads_a_png_with_its_parameters(real_harness: Harness) -> None:
    standin = real_harness.standin
    handle = await standin.slash(
        "imagine", ALICE, prompt="a lighthouse at dusk", seed="42", steps=3, width=64, height=64, model="builtin:tiny"
    )
    await real_harness.settle(handle)
    final = [r for r in standin.sent(handle, "PATCH") if r.files][-1]
    [upload] = final.files
    image = Image.open(io.BytesIO(upload.data))
    assert image.format == "PNG" and image.size == (64, 64)
    assert "Seed: 42" in image.info["parameters"]  # the A1111 chunk, and the same text in the message
    assert "Seed: 42" in final.json["content"] and "Steps: 3" in final.json["content"]
    assert any("step 3/3" in str(r.json) for r in standin.sent(handle, "PATCH"))
