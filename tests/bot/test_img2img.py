"""/imagine with an init image (img2img) and hires fix, through discord.py against the stand-in."""

from __future__ import annotations

import hashlib
import struct

import aiohttp
import pytest

from bot.uploads import download
from engine.errors import InvalidParamsError
from tests.bot.harness import ALICE, Harness
from tests.bot.helpers import assert_ephemeral, callback_of, click, edits, imagine
from tests.bot.standin import EPHEMERAL, InteractionHandle, Standin
from tests.fakes import FakeExecutor, tiny_png


def blobs_of(harness: Harness) -> list[str]:
    folder = harness.settings.data_dir / "blobs"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def assert_withdrawn(standin: Standin, handle: InteractionHandle, phrase: str) -> None:
    """Refused after the "thinking" defer: the placeholder is deleted and the reason goes to the user alone."""
    assert callback_of(standin, handle) == {"type": 5}
    sent = standin.sent(handle)
    assert [r.method for r in sent if "@original" in r.path] == ["DELETE"]
    [followup] = [r for r in sent if r.method == "POST" and r.path.startswith("/webhooks/")]
    assert followup.json["flags"] & EPHEMERAL and phrase in followup.json["content"]


async def test_init_image_is_checked_stored_and_its_hash_queued(harness: Harness, executor: FakeExecutor) -> None:
    data = tiny_png(96, 64, seed=5)
    upload = harness.standin.attachment("cat.png", data, width=96, height=64)
    handle = await imagine(harness, prompt="a cat, oil painting", init_image=upload, denoising_strength=0.6)
    params = executor.submitted[0].params
    digest = hashlib.sha256(data).hexdigest()
    assert (params.init_image, params.denoising_strength) == (digest, 0.6)
    assert blobs_of(harness) == [digest]
    assert (harness.settings.data_dir / "blobs" / digest).read_bytes() == data
    assert (params.width, params.height) == (96, 64)  # the image's aspect at about the model's pixel count
    assert harness.standin.downloads == [upload.id]
    assert "img2img at 0.6" in edits(harness.standin, handle)[0].json["content"]
    assert edits(harness.standin, handle)[-1].files


async def test_explicit_size_wins_over_the_init_images_aspect(harness: Harness, executor: FakeExecutor) -> None:
    upload = harness.standin.attachment("cat.png", tiny_png(96, 64, seed=5))
    await imagine(harness, prompt="a cat", init_image=upload, width=64, height=64)
    assert (executor.submitted[0].params.width, executor.submitted[0].params.height) == (64, 64)


async def test_reroll_of_an_img2img_result_replays_the_stored_init_image(
    harness: Harness, executor: FakeExecutor
) -> None:
    upload = harness.standin.attachment("cat.png", tiny_png(64, 64, seed=5))
    first = await imagine(harness, prompt="a cat", init_image=upload)
    await harness.restart()
    await click(harness, first, "reroll", ALICE)
    original, again = (job.params for job in executor.submitted)
    assert again.init_image == original.init_image is not None and again.denoising_strength == 0.75
    assert harness.standin.downloads == [upload.id]  # from the blob store, not downloaded again


async def test_an_init_image_declared_too_big_is_refused_before_it_is_downloaded(
    harness: Harness, executor: FakeExecutor
) -> None:
    upload = harness.standin.attachment("huge.png", tiny_png(64, 64, seed=1), size=25 * 1024 * 1024)
    handle = await imagine(harness, prompt="a cat", init_image=upload)
    assert_ephemeral(harness.standin, handle, "`huge.png` is 25.0 MiB", "up to 20 MiB")
    assert harness.standin.downloads == [] and executor.submitted == [] and blobs_of(harness) == []


async def test_an_init_image_of_the_wrong_declared_type_is_refused_before_download(harness: Harness) -> None:
    upload = harness.standin.attachment("clip.gif", b"GIF89a" + bytes(100), content_type="image/gif")
    handle = await imagine(harness, prompt="a cat", init_image=upload)
    assert_ephemeral(harness.standin, handle, "`clip.gif` is image/gif", "PNG, JPEG or WebP")
    assert harness.standin.downloads == []


async def test_a_file_that_is_not_an_image_is_refused_after_download_and_not_stored(
    harness: Harness, executor: FakeExecutor
) -> None:
    upload = harness.standin.attachment("cat.png", b"GIF89a" + bytes(100))  # declared image/png: a lie
    handle = await imagine(harness, prompt="a cat", init_image=upload)
    assert_withdrawn(harness.standin, handle, "not a PNG, JPEG or WebP image")
    assert executor.submitted == [] and blobs_of(harness) == []


async def test_too_many_pixels_in_the_header_are_refused_without_decoding(
    harness: Harness, executor: FakeExecutor
) -> None:
    png = bytearray(tiny_png(64, 64, seed=1))
    png[16:24] = struct.pack(">II", 30000, 30000)  # a decompression bomb's header, a few hundred bytes long
    upload = harness.standin.attachment("bomb.png", bytes(png))
    handle = await imagine(harness, prompt="a cat", init_image=upload)
    limit = 4 * harness.settings.max_pixels
    assert_withdrawn(harness.standin, handle, f"this server accepts at most {limit:,} pixels")
    assert executor.submitted == [] and blobs_of(harness) == []


async def test_an_option_error_with_an_init_image_is_refused_before_download(harness: Harness) -> None:
    upload = harness.standin.attachment("cat.png", tiny_png(64, 64, seed=1))
    handle = await imagine(harness, prompt="a cat", init_image=upload, hires=True)
    assert_ephemeral(harness.standin, handle, "Hires fix is for text-to-image")
    assert harness.standin.downloads == []


async def test_download_stops_at_the_cap_whatever_the_declared_size(standin: Standin) -> None:
    upload = standin.attachment("big.png", tiny_png(64, 64, seed=1) + bytes(200_000), size=1000)
    async with aiohttp.ClientSession() as session:
        url = upload.payload(standin.base_url)["url"]
        assert len(await download(session, url, max_bytes=300_000)) > 200_000
        with pytest.raises(InvalidParamsError, match="over"):
            await download(session, url, max_bytes=100_000)


async def test_hires_options_reach_the_params(harness: Harness, executor: FakeExecutor) -> None:
    handle = await imagine(
        harness, prompt="a castle", hires=True, hires_scale=1.5, hires_steps=3, denoising_strength=0.4, width=64
    )
    params = executor.submitted[0].params
    assert (params.enable_hr, params.hr_scale, params.hr_steps, params.denoising_strength) == (True, 1.5, 3, 0.4)
    assert params.hr_upscaler == "Latent"
    assert "hires fix → 96×96" in edits(harness.standin, handle)[0].json["content"]


async def test_hires_past_the_pixel_limit_is_refused_and_1024_squared_times_two_is_not(
    harness: Harness, executor: FakeExecutor
) -> None:
    handle = await imagine(harness, prompt="a castle", width=1024, height=1024, hires=True, hires_scale=2.5)
    assert_ephemeral(harness.standin, handle, "Hires fix would make 2560x2560", "this server allows at most 4,194,304")
    assert executor.submitted == []
    await imagine(harness, prompt="a castle", width=1024, height=1024, hires=True)  # an ordinary SDXL hires job
    assert [(j.params.width, j.params.hr_scale) for j in executor.submitted] == [(1024, 2.0)]
