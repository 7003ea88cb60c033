"""Progress previews on the real diffusers code path: made for builtin:tiny and builtin:shapes, small and valid,
made only when asked, throttled by the executor, and without any effect on the final image."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import numpy as np
import pytest
import torch
from PIL import Image

from engine import previews
from engine.denoise import Denoised
from engine.executor import GpuExecutor
from engine.jobs import Finished, Job, JobEvent, Progress
from engine.pipeline import DiffusersEngine
from engine.previews import PreviewSource, approx_cheap, encode_preview, grid, uses_approx
from tests.engine.conftest import tiny_params

SHAPES = {"model": "builtin:shapes", "prompt": "a red circle on a blue background", "width": 64, "height": 64}


def first_preview(engine: DiffusersEngine, **changes: object) -> bytes:
    made: list[bytes] = []

    def on_preview(step: int, total: int, source: PreviewSource) -> None:
        if not made:
            made.append(encode_preview(source.render()))

    engine.generate(tiny_params(**changes), on_preview=on_preview)
    return made[0]


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# -- the preview itself -----------------------------------------------------------------------------------------


def test_builtin_tiny_gets_a_small_jpeg_from_the_latent_projection(engine: DiffusersEngine) -> None:
    image = opened(first_preview(engine, width=256, height=256))
    assert image.format == "JPEG" and image.mode == "RGB"
    assert image.size == (256, 256)  # the 32x32 projection, nearest-upscaled 8x to be visible


def test_builtin_shapes_gets_a_small_jpeg_from_its_vae(engine: DiffusersEngine) -> None:
    image = opened(first_preview(engine, **SHAPES))
    assert image.format == "JPEG" and image.size == (256, 256)


def test_a_batch_preview_is_one_grid_within_256_px(engine: DiffusersEngine) -> None:
    image = opened(first_preview(engine, width=256, height=128, batch_size=3))
    assert image.size == (256, 128)  # a 2x2 grid of 32x16 projections = 64x32, upscaled 4x


def test_the_last_preview_shows_the_final_image(engine: DiffusersEngine) -> None:
    # Euler's last step lands on the denoised estimate, so the honest preview of that step is the result.
    last: list[Image.Image] = []
    [result] = engine.generate(
        tiny_params(**SHAPES, sampler="Euler", steps=6),
        on_preview=lambda step, total, source: last.append(source.render()) if step == total else None,
    )
    diff = np.abs(np.asarray(last[0], dtype=np.int16) - np.asarray(result.image, dtype=np.int16))
    assert diff.max() <= 2


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M", "DDIM", "PLMS", "UniPC", "LCM"])
def test_previews_do_not_change_the_final_image(engine: DiffusersEngine, sampler: str) -> None:
    params = tiny_params(sampler=sampler, width=128, height=64, batch_size=2)
    plain = [raw.image.tobytes() for raw in engine.generate(params)]
    steps: list[int] = []
    renders: list[int] = []

    def on_preview(step: int, total: int, source: PreviewSource) -> None:
        source.render()
        renders.append(step)

    watched = engine.generate(params, on_step=lambda step, total: steps.append(step), on_preview=on_preview)
    assert [raw.image.tobytes() for raw in watched] == plain
    assert renders == steps and len(renders) >= params.steps - 1  # a preview was made after every step


def test_previews_cost_nothing_when_not_asked_for(engine: DiffusersEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("preview work done without a listener")

    for name in ("set", "set_lazy", "get"):
        monkeypatch.setattr(Denoised, name, refuse)
    monkeypatch.setattr(previews.LatentPreview, "__init__", refuse)
    engine.generate(tiny_params(width=256, height=256))
    engine.generate(tiny_params(sampler="DDIM"))
    engine.generate(tiny_params(sampler="UniPC"))


def test_an_offered_preview_is_not_made_unless_rendered(
    engine: DiffusersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a preview was made that nobody asked for")

    monkeypatch.setattr(previews, "approx_cheap", refuse)
    monkeypatch.setattr(previews, "decode", refuse)
    offers: list[int] = []
    engine.generate(tiny_params(width=256, height=256), on_preview=lambda step, total, source: offers.append(step))
    engine.generate(tiny_params(**SHAPES), on_preview=lambda step, total, source: offers.append(step))
    assert offers == [1, 2, 3, 4] * 2


# -- throttled by the executor, on the real engine ----------------------------------------------------------------


async def run_job(engine: DiffusersEngine, interval: float | None, steps: int) -> list[Progress]:
    executor = GpuExecutor(engine, max_queued_per_user=3, max_queued_total=5, preview_interval=interval)
    await executor.start()
    try:
        ticket = await executor.submit(Job("p", "u", tiny_params(steps=steps, width=256, height=256)))
        events = await asyncio.wait_for(_collect(ticket.events), 60)
    finally:
        await executor.close()
    assert isinstance(events[-1], Finished)
    return [e for e in events if isinstance(e, Progress)]


async def _collect(events: AsyncIterator[JobEvent]) -> list[JobEvent]:
    return [event async for event in events]


async def test_the_executor_sends_previews_of_a_real_job(engine: DiffusersEngine) -> None:
    progress = await run_job(engine, 0.0, steps=6)
    shown = [p.preview for p in progress if p.preview is not None]
    assert shown and all(opened(data).size == (256, 256) for data in shown)


async def test_no_preview_is_made_within_the_interval(engine: DiffusersEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    rendered: list[int] = []
    render = previews.LatentPreview.render

    def counting(self: previews.LatentPreview) -> Image.Image:
        rendered.append(1)
        return render(self)

    monkeypatch.setattr(previews.LatentPreview, "render", counting)
    progress = await run_job(engine, 60.0, steps=6)
    assert rendered == [] and all(p.preview is None for p in progress)


# -- the pieces -------------------------------------------------------------------------------------------------


def test_approx_cheap_is_a1111s_projection_then_x_plus_1_over_2() -> None:
    latents = torch.zeros(1, 4, 1, 2)
    latents[0, 0, 0, 0] = 1.0  # channel 0 alone: (0.298, 0.207, 0.208)
    latents[0, 3, 0, 1] = 1.0  # channel 3 alone: (-0.184, -0.271, -0.473)
    rgb = approx_cheap(latents)
    assert rgb.shape == (1, 1, 2, 3)
    assert torch.allclose(rgb[0, 0, 0], torch.tensor([1.298, 1.207, 1.208]) / 2)
    assert torch.allclose(rgb[0, 0, 1], torch.tensor([0.816, 0.729, 0.527]) / 2)
    assert approx_cheap(torch.full((1, 4, 1, 1), 50.0)).max() == 1.0  # clamped


def test_the_real_vae_decodes_tiny_images_and_other_vaes() -> None:
    assert uses_approx(4, 8, 512, 512)
    assert uses_approx(4, 8, 256, 64)  # one side over 128 is enough to make the VAE cost real
    assert not uses_approx(4, 8, 128, 128)  # tiny: the real VAE is cheap there
    assert not uses_approx(4, 4, 256, 256)  # builtin:shapes' VAE: the SD 1.x coefficients mean nothing to it
    assert not uses_approx(16, 8, 1024, 1024)  # SD3/Flux-style latents


def test_encode_preview_upscales_tiny_images_and_shrinks_large_ones() -> None:
    assert opened(encode_preview(Image.new("RGB", (16, 12)))).size == (256, 192)
    assert opened(encode_preview(Image.new("RGB", (200, 100)))).size == (200, 100)
    assert opened(encode_preview(Image.new("RGB", (1024, 512)))).size == (256, 128)


def test_grid_lays_a_batch_out_in_rows() -> None:
    batch = np.stack([np.full((2, 3, 3), i * 50, dtype=np.uint8) for i in range(3)])
    image = np.asarray(grid(batch))
    assert image.shape == (4, 6, 3)
    assert image[0, 0, 0] == 0 and image[0, 3, 0] == 50 and image[2, 0, 0] == 100 and image[2, 3, 0] == 0


def test_previews_follow_the_hires_pass(engine: DiffusersEngine) -> None:
    sizes: list[tuple[int, int]] = []
    params = tiny_params(enable_hr=True, hr_scale=2.0, hr_steps=2, denoising_strength=0.6)
    plain = engine.generate(params)[0].image.tobytes()
    [result] = engine.generate(params, on_preview=lambda step, total, source: sizes.append(source.render().size))
    assert sizes[0] == (64, 64) and sizes[-1] == (128, 128)  # both tiny: decoded by the real VAE
    assert result.image.tobytes() == plain
