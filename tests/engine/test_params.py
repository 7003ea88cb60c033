"""build_params and resolve_seed: limits, hints and A1111's seed rules."""

import random
from typing import Any

import pytest

from engine.errors import InvalidParamsError
from engine.params import MAX_SEED, RANDOM_SEED_RANGE, GenerationParams, Limits, build_params, resolve_seed

LIMITS = Limits()


def build(**options: Any) -> GenerationParams:
    return build_params({"prompt": "a cat", "seed": 1, **options}, model="m", limits=LIMITS)


def test_defaults_are_a1111_defaults() -> None:
    p = build()
    assert (p.steps, p.sampler, p.schedule, p.cfg_scale, p.width, p.height) == (
        20, "DPM++ 2M", "Automatic", 7.0, 512, 512,
    )  # fmt: skip
    assert (p.batch_size, p.subseed, p.subseed_strength, p.clip_skip) == (1, 0, 0.0, 1)


def test_string_options_are_parsed() -> None:
    p = build(steps="30", cfg_scale="7.5", width="640", height="768", seed="42")
    assert (p.steps, p.cfg_scale, p.width, p.height, p.seed) == (30, 7.5, 640, 768, 42)


def test_empty_strings_mean_the_default() -> None:
    assert build(steps="", cfg_scale=" ").steps == 20


def test_unknown_option_is_refused() -> None:
    with pytest.raises(InvalidParamsError, match="Unknown option"):
        build(hires="yes")


def test_zero_steps_are_refused() -> None:
    with pytest.raises(InvalidParamsError, match="Steps must be between 1 and 150, not 0"):
        build(steps=0)


def test_steps_over_the_limit_are_refused() -> None:
    with pytest.raises(InvalidParamsError, match="Steps must be between 1 and 150, not 151"):
        build(steps=151)


def test_fractional_steps_are_refused() -> None:
    with pytest.raises(InvalidParamsError, match="whole number"):
        build(steps=20.5)


def test_side_not_a_multiple_of_8_gets_a_hint() -> None:
    with pytest.raises(InvalidParamsError, match=r"Width must be a multiple of 8 \(try 512 or 520\), not 513"):
        build(width=513)


def test_side_below_the_minimum_is_refused() -> None:
    with pytest.raises(InvalidParamsError, match="Height must be between 64 and 2048"):
        build(height=32)


def test_too_many_pixels_get_a_size_that_fits() -> None:
    with pytest.raises(InvalidParamsError, match=r"1536x1536 is 2,359,296 pixels.*e\.g\. 1024x1024"):
        build(width=1536, height=1536)


def test_cfg_out_of_range_is_refused() -> None:
    with pytest.raises(InvalidParamsError, match="CFG scale must be between 0 and 30"):
        build(cfg_scale=31)


def test_non_finite_cfg_is_refused() -> None:
    with pytest.raises(InvalidParamsError, match="finite"):
        build(cfg_scale="nan")


def test_batch_over_the_limit_is_refused() -> None:
    with pytest.raises(InvalidParamsError, match="Batch size must be between 1 and 4"):
        build(batch_size=5)


def test_clip_skip_out_of_range_is_refused() -> None:
    with pytest.raises(InvalidParamsError, match="Clip skip must be between 1 and 12"):
        build(clip_skip=13)


def test_prompt_over_the_character_limit_is_refused() -> None:
    with pytest.raises(InvalidParamsError, match="Prompt is 4001 characters"):
        build(prompt="x" * 4001)


def test_sampler_is_resolved() -> None:
    p = build(sampler="DPM++ 2M SDE Karras")
    assert (p.sampler, p.schedule) == ("DPM++ 2M SDE", "Karras")


def test_variation_strength_out_of_range_is_refused() -> None:
    with pytest.raises(InvalidParamsError, match="Variation strength must be between 0 and 1"):
        build(subseed_strength=1.5)


@pytest.mark.parametrize("value", [-1, "-1", "", " ", None])
def test_random_seed_for_minus_one_or_empty(value: int | str | None) -> None:
    expected = random.Random(7).randrange(RANDOM_SEED_RANGE)
    assert resolve_seed(value, random.Random(7)) == expected


def test_random_seed_is_below_a1111s_range() -> None:
    assert all(0 <= resolve_seed(-1) < RANDOM_SEED_RANGE for _ in range(20))


def test_largest_seed_is_accepted() -> None:
    assert resolve_seed(str(MAX_SEED)) == 2**64 - 1


def test_civitai_eleven_digit_seed_is_accepted() -> None:
    assert resolve_seed("12345678901") == 12345678901


def test_seed_above_the_maximum_is_refused() -> None:
    with pytest.raises(InvalidParamsError, match="Seed must be between 0 and"):
        resolve_seed(2**64)


def test_negative_seed_other_than_minus_one_is_refused() -> None:
    with pytest.raises(InvalidParamsError, match="Seed must be between 0 and"):
        resolve_seed(-2)


def test_non_numeric_seed_is_refused() -> None:
    with pytest.raises(InvalidParamsError, match="whole number"):
        resolve_seed("lucky")


def test_batch_seeds_count_up() -> None:
    assert build(seed=10, batch_size=3).image_seeds() == [10, 11, 12]


def test_batch_seeds_wrap_at_the_maximum() -> None:
    assert build(seed=MAX_SEED, batch_size=2).image_seeds() == [MAX_SEED, 0]


def test_variation_batch_keeps_the_seed_and_counts_up_subseeds() -> None:
    p = build(seed=10, batch_size=3, subseed=100, subseed_strength=0.2)
    assert (p.image_seeds(), p.image_subseeds()) == ([10, 10, 10], [100, 101, 102])


def test_subseed_is_random_when_variation_is_on_without_one() -> None:
    p = build_params(
        {"prompt": "a", "seed": 1, "subseed_strength": 0.5}, model="m", limits=LIMITS, rng=random.Random(3)
    )
    assert p.subseed == random.Random(3).randrange(RANDOM_SEED_RANGE)


def test_subseed_is_zero_without_variation() -> None:
    assert build(subseed=55).subseed == 0


def test_params_survive_a_dict_round_trip() -> None:
    p = build(prompt="猫", negative_prompt="dog", batch_size=2, subseed=3, subseed_strength=0.1)
    assert GenerationParams.from_dict(p.to_dict()) == p
