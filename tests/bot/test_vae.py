"""VAE choice and model families through Discord: the `vae` option, a pasted `VAE:`, and refusals before queueing."""

from __future__ import annotations

from tests.bot.harness import ALICE, Harness
from tests.bot.helpers import assert_ephemeral, contents, imagine
from tests.fakes import FakeExecutor


async def test_the_vae_option_names_a_file_of_the_vae_folder(harness: Harness, executor: FakeExecutor) -> None:
    await imagine(harness, prompt="a fox", model="photo-xl", vae="SDXL_VAE")
    assert executor.submitted[-1].params.vae == "sdxl_vae.safetensors"  # the file's name, as A1111 writes it


async def test_automatic_and_none_mean_the_models_own_vae(harness: Harness, executor: FakeExecutor) -> None:
    await imagine(harness, prompt="a fox", vae="Automatic")
    await imagine(harness, prompt="a fox", vae="None")
    assert [job.params.vae for job in executor.submitted] == [None, None]


async def test_a_vae_of_the_other_family_is_refused_before_queueing(harness: Harness, executor: FakeExecutor) -> None:
    handle = await imagine(harness, prompt="a fox", model="anime-v3", vae="sdxl_vae")
    assert_ephemeral(harness.standin, handle, "sdxl_vae.safetensors", "sdxl models")
    assert executor.submitted == []


async def test_an_unknown_vae_option_is_refused_with_the_closest_names(
    harness: Harness, executor: FakeExecutor
) -> None:
    handle = await imagine(harness, prompt="a fox", vae="clear-vae")
    assert_ephemeral(harness.standin, handle, "Unknown VAE 'clear-vae'", "clearvae.safetensors")
    assert executor.submitted == []


async def test_a_pasted_vae_this_server_lacks_falls_back_with_a_note(harness: Harness, executor: FakeExecutor) -> None:
    block = "a fox\nSteps: 4, Sampler: Euler, Seed: 5, Size: 64x64, VAE: someone-elses.safetensors, VAE hash: 01234567"
    handle = await imagine(harness, prompt=block)
    assert executor.submitted[-1].params.vae is None
    assert "The pasted VAE `someone-elses.safetensors` is not available here" in contents(harness.standin, handle)[-1]


async def test_a_pasted_vae_the_server_has_is_used(harness: Harness, executor: FakeExecutor) -> None:
    block = "a fox\nSteps: 4, Sampler: Euler, Seed: 5, Size: 64x64, VAE: clearvae.safetensors"
    await imagine(harness, prompt=block)
    assert executor.submitted[-1].params.vae == "clearvae.safetensors"


async def test_vae_autocomplete_offers_what_fits_the_chosen_model(harness: Harness) -> None:
    handle = await harness.standin.autocomplete("imagine", ALICE, "vae", prompt="x", model="photo-xl", vae="")
    body = (await harness.standin.callback(handle)).json
    names = [choice["value"] for choice in body["data"]["choices"]]
    assert names == ["Automatic", "None", "clearvae.safetensors", "sdxl_vae.safetensors"]


async def test_a_lora_made_for_the_other_family_is_refused_before_queueing(
    harness: Harness, executor: FakeExecutor
) -> None:
    handle = await imagine(harness, prompt="a fox <lora:anime-lineart:1>", model="anime-v3")
    assert_ephemeral(harness.standin, handle, "'anime-lineart' was made for sdxl")
    assert executor.submitted == []
    await imagine(harness, prompt="a fox <lora:anime-lineart:1>", model="photo-xl")
    assert len(executor.submitted) == 1
