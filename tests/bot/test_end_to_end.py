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
def preview_interval() -> float | None:
    return 1.5  # the default: a job of a few milliseconds per step shows none


@pytest.fixture
async def real_harness(standin: Standin, tmp_path: Path, preview_interval: float | None) -> AsyncIterator[Harness]:
    from engine.executor import GpuExecutor
    from engine.models.registry import ModelRegistry
    from engine.pipeline import DiffusersEngine

    (tmp_path / "models").mkdir()
    registry = ModelRegistry(tmp_path / "models", tmp_path / "cache")
    executor = GpuExecutor(
        DiffusersEngine(registry, "cpu"),
        max_queued_per_user=3,
        max_queued_total=10,
        preview_interval=preview_interval,
    )
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


@pytest.mark.parametrize("preview_interval", [0.0])
async def test_progress_shows_a_preview_of_the_real_job_then_the_result(real_harness: Harness) -> None:
    standin = real_harness.standin
    handle = await standin.slash(
        "imagine", ALICE, prompt="a lighthouse at dusk", seed="42", steps=6, width=256, height=256, model="builtin:tiny"
    )
    await real_harness.settle(handle)
    patches = [r for r in standin.sent(handle, "PATCH") if r.files]
    shown = [r for r in patches[:-1] if r.files[0].filename.endswith("-preview.jpg")]
    assert shown, "no progress edit carried a preview"
    with Image.open(io.BytesIO(shown[0].files[0].data)) as preview:
        assert preview.format == "JPEG" and preview.size == (256, 256)
    [upload] = patches[-1].files
    assert upload.filename.endswith(".png")
    assert [a["filename"] for a in standin.original(handle)["attachments"]] == [upload.filename]
