"""The Edit modal's text: pure functions, tested without mocks."""

from __future__ import annotations

import pytest

from bot.edit import edit_box, read_edit
from engine.infotext import create_infotext
from engine.params import GenerationParams, Limits, build_params
from engine.plan import make_plan

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


@pytest.mark.parametrize("params", CASES.values(), ids=list(CASES))
def test_an_unchanged_box_gives_the_same_params(params: GenerationParams) -> None:
    options, model, notes = read_edit(params.prompt, params.negative_prompt, edit_box(params), source=params)
    assert (model.name, notes) == (params.model, [])
    assert build_params(options, model=params.model, limits=Limits()) == params


def test_a_trimmed_box_still_reads_as_parameters_and_a_missing_seed_is_random() -> None:
    options, model, notes = read_edit("a cat", "", "Steps: 30\nSampler: Euler a", source=PLAIN)
    assert (options["steps"], options["sampler"], model.name, notes) == ("30", "Euler a", None, [])
    assert "seed" not in options and options["prompt"] == "a cat"


def test_unsupported_keys_are_reported() -> None:
    _, _, notes = read_edit("a cat", "", edit_box(PLAIN) + ", Face restoration: CodeFormer", source=PLAIN)
    assert any("Face restoration" in note for note in notes)
