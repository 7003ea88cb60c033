"""Upscales run as jobs: an Extras upscale through the real executor and engine (progress per tile, the image's
parameters kept and A1111's `extras` chunk added, cancel between tiles), and a hires pass through an upscaler model."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.errors import Cancelled
from engine.executor import GpuExecutor
from engine.jobs import Finished, Job, Progress
from engine.models.registry import ModelRegistry
from engine.params import Limits, extras_params
from engine.pipeline import DiffusersEngine
from engine.upscalers.files import UpscalerLibrary
from engine.upscalers.run import ModelUpscaler, upscale
from tests.engine.conftest import tiny_params
from tests.engine.upscaler_files import compact_reference, esrgan_reference, save


def _source(width: int, height: int) -> bytes:
    rng = np.random.default_rng(1)
    info = PngInfo()
    info.add_text("parameters", "a fox\nSteps: 20, Seed: 7")
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


@pytest.fixture
def upscaling_engine(registry: ModelRegistry, tmp_path: Path) -> DiffusersEngine:
    save(esrgan_reference(seed=2), tmp_path / "ESRGAN" / "4x-UltraSharp.pth")
    save(compact_reference(seed=3, scale=2), tmp_path / "RealESRGAN" / "RealESRGAN_x2plus.safetensors")
    library = UpscalerLibrary([tmp_path / "ESRGAN", tmp_path / "RealESRGAN"])
    return DiffusersEngine(registry, "cpu", upscalers=library)


async def test_an_extras_upscale_is_a_job_with_progress_per_tile_and_a1111s_chunks(
    upscaling_engine: DiffusersEngine,
) -> None:
    digest = upscaling_engine.blobs.put(_source(300, 200))
    params = extras_params(
        init_image=digest, source_size=(300, 200), upscaler="4x-UltraSharp", model="builtin:tiny",
        limits=Limits(), scale=1.5,
    )  # fmt: skip
    executor = GpuExecutor([upscaling_engine], max_queued_per_user=2, max_queued_total=4)
    try:
        ticket = await executor.submit(Job("up1", "u", params))
        events = [event async for event in ticket.events]
    finally:
        await executor.close()
    steps = [(e.step, e.total) for e in events if isinstance(e, Progress)]
    assert steps == [(n, 4) for n in range(1, 5)]  # 2x2 tiles of 192 over 300x200
    finished = events[-1]
    assert isinstance(finished, Finished)
    [image] = finished.result.images
    with Image.open(io.BytesIO(image.png)) as png:
        assert png.size == (448, 296)  # 450x300 cut down to multiples of 8, as A1111's Extras
        assert png.text == {
            "parameters": "a fox\nSteps: 20, Seed: 7",
            "extras": "Postprocess upscale by: 1.5, Postprocess upscaler: 4x-UltraSharp",
        }
    assert image.infotext.endswith("\nPostprocess upscale by: 1.5, Postprocess upscaler: 4x-UltraSharp")


def test_an_upscale_stops_between_tiles_when_cancelled() -> None:
    seen: list[int] = []
    model = ModelUpscaler(
        lambda x: torch.nn.functional.interpolate(x, scale_factor=2), torch.device("cpu"),
        on_tile=lambda done, total: seen.append(done), is_cancelled=lambda: len(seen) >= 2,
    )  # fmt: skip
    with pytest.raises(Cancelled):
        upscale(Image.new("RGB", (600, 400)), 2.0, model.upscale_once)
    assert seen == [1, 2]


def test_a_hires_pass_through_an_upscaler_model_names_it_and_differs_from_lanczos(
    upscaling_engine: DiffusersEngine,
) -> None:
    hires = tiny_params(enable_hr=True, hr_scale=2.0, denoising_strength=0.3, hr_steps=2)
    [with_model] = upscaling_engine.generate(hires.replace(hr_upscaler="4x-UltraSharp"))
    [with_lanczos] = upscaling_engine.generate(hires.replace(hr_upscaler="Lanczos"))
    assert with_model.image.size == (128, 128)
    assert "Hires upscaler: 4x-UltraSharp" in with_model.infotext
    assert not np.array_equal(np.asarray(with_model.image), np.asarray(with_lanczos.image))
    [by_a1111_name] = upscaling_engine.generate(hires.replace(hr_upscaler="R-ESRGAN 2x+"))
    assert "Hires upscaler: R-ESRGAN 2x+" in by_a1111_name.infotext
