"""Midjourney-style prompt flags: pure parsing, no mocks."""

from __future__ import annotations

import pytest

from engine.errors import InvalidParamsError
from engine.prompts.flags import PromptFlags, read_flags, size_for_aspect

BASE = 512 * 512


def read(text: str, max_pixels: int = 1024 * 1024) -> PromptFlags:
    return read_flags(text, base_pixels=BASE, max_pixels=max_pixels)


def test_a_prompt_without_flags_is_unchanged() -> None:
    assert read("a cat -- on a mat, 2--3") == PromptFlags("a cat -- on a mat, 2--3")


def test_trailing_flags_become_options_and_leave_the_prompt() -> None:
    flags = read("a red fox in snow --seed 42 --steps 30 --cfg 6.5")
    assert flags.prompt == "a red fox in snow"
    assert flags.options == {"seed": "42", "steps": "30", "cfg_scale": "6.5"}


def test_aspect_ratio_keeps_about_the_model_pixel_count_in_multiples_of_8() -> None:
    assert read("x --ar 16:9").options == {"width": 680, "height": 384}
    assert read("x --ar 1:1").options == {"width": 512, "height": 512}
    assert read("x --aspect 2:3").options == {"width": 416, "height": 624}
    for ratio in ("16:9", "3:2", "7:4", "1:3"):
        options = read(f"x --ar {ratio}").options
        assert options["width"] % 8 == 0 and options["height"] % 8 == 0
        assert abs(options["width"] * options["height"] - BASE) / BASE < 0.05


def test_aspect_ratio_stays_within_a_small_pixel_limit() -> None:
    options = read("x --ar 16:9", max_pixels=200_000).options
    assert options["width"] * options["height"] <= 200_000


def test_no_terms_are_appended_to_the_negative_prompt() -> None:
    flags = read("a portrait --no text, watermark ,  , blurry")
    assert flags.avoid == ("text", "watermark", "blurry")
    assert flags.negative_prompt("lowres") == "lowres, text, watermark, blurry"
    assert flags.negative_prompt("") == "text, watermark, blurry"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x --chaos 50", "Unknown flag `--chaos`"),
        ("x --ar wide", "takes a ratio like `16:9`"),
        ("x --ar 16:9 in the snow", "takes a ratio like `16:9`"),
        ("x --ar 10:1", "between 1:4 and 4:1"),
        ("x --no", "needs what to avoid"),
        ("x --seed", "`--seed` takes one value"),
        ("x --steps 20 30", "`--steps` takes one value"),
        ("x --seed 1 --seed 2", "given twice"),
    ],
)
def test_bad_flags_are_refused_with_a_message_that_teaches(text: str, message: str) -> None:
    with pytest.raises(InvalidParamsError) as caught:
        read(text)
    assert message in str(caught.value)


def test_size_for_aspect_clamps_extreme_ratios() -> None:
    assert size_for_aspect(100, 1, base_pixels=BASE, max_pixels=BASE) == size_for_aspect(
        4, 1, base_pixels=BASE, max_pixels=BASE
    )


def test_size_for_aspect_keeps_the_short_side_at_least_the_minimum() -> None:
    assert size_for_aspect(3, 2, base_pixels=64 * 64, max_pixels=BASE) == (96, 64)
