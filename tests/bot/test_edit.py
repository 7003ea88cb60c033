"""The Edit modal's text: pure functions, tested without mocks."""

from __future__ import annotations

import pytest

from bot.edit import edit_box, edit_request
from engine.infotext import create_infotext
from engine.params import GenerationParams, Limits
from engine.plan import make_plan
from engine.request import Catalog, resolve
from tests.fakes import FakeEntry, FakeNetworks, FakeRegistry

PLAIN = GenerationParams(prompt="a red fox", negative_prompt="blurry", model="anime-v3", seed=42, steps=20)
CASES = {
    "plain": PLAIN,
    "variation": PLAIN.replace(subseed=7, subseed_strength=0.15, sampler="Euler a", schedule="Karras", clip_skip=2),
    "hires": PLAIN.replace(enable_hr=True, hr_scale=1.5, hr_steps=10, denoising_strength=0.45, hr_upscaler="Lanczos"),
    "img2img": PLAIN.replace(init_image="ab" * 32, denoising_strength=0.6, width=768, height=512, batch_size=2),
    "rng": PLAIN.replace(rng="CPU", ensd=31337, cfg_scale=6.5, sampler="Euler a"),
}


def test_the_box_reads_as_a1111_writes_it() -> None:
    assert edit_box(PLAIN) == (
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x512, "
        "Model: anime-v3, Version: Easel 0.1.0"
    )


def test_the_box_is_the_images_parameter_line() -> None:
    params = CASES["hires"]
    infotext = create_infotext(
        params, model_name=params.model, model_hash=None, extra=dict(make_plan(params).infotext_fields)
    )
    assert infotext.splitlines()[-1] == edit_box(params)


def test_ensd_is_left_out_for_a_sampler_it_does_not_move_as_a1111_writes_it() -> None:
    assert "ENSD" not in edit_box(PLAIN.replace(ensd=31337))
    assert "ENSD: 31337" in edit_box(PLAIN.replace(ensd=31337, sampler="Euler a"))


CATALOG = Catalog(FakeRegistry(entries_=[FakeEntry("anime-v3"), FakeEntry("photo-xl", family="sdxl")]), FakeNetworks())


def submitted(prompt: str, negative: str, box: str, source: GenerationParams) -> tuple[GenerationParams, list[str]]:
    resolved = resolve(edit_request(prompt, negative, box, source=source), CATALOG, Limits())
    return resolved.params, list(resolved.notes)


@pytest.mark.parametrize("params", CASES.values(), ids=list(CASES))
def test_an_unchanged_box_gives_the_same_params(params: GenerationParams) -> None:
    assert submitted(params.prompt, params.negative_prompt, edit_box(params), params) == (params, [])


def test_a_trimmed_box_still_reads_as_parameters_and_a_missing_seed_is_random() -> None:
    first, notes = submitted("a cat", "", "Steps: 30\nSampler: Euler a", PLAIN)
    second, _ = submitted("a cat", "", "Steps: 30\nSampler: Euler a", PLAIN)
    assert (first.steps, first.sampler, first.model, first.prompt, notes) == (30, "Euler a", "anime-v3", "a cat", [])
    assert first.seed != second.seed


def test_the_box_may_name_another_model_and_the_prompt_may_carry_flags() -> None:
    params, _ = submitted("a cat --ar 2:1", "", edit_box(PLAIN).replace("anime-v3", "photo-xl"), PLAIN)
    assert (params.model, params.prompt, params.width / params.height) == ("photo-xl", "a cat", 2.0)


def test_unsupported_keys_are_reported() -> None:
    _, notes = submitted("a cat", "", edit_box(PLAIN) + ", Face restoration: CodeFormer", PLAIN)
    assert any("Face restoration" in note for note in notes)
