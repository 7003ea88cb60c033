"""The layering rules, pure: server -> channel -> user defaults, the lowest ceiling, and what `clear` reads."""

from __future__ import annotations

import pytest

from bot.layers import ceilings, checked_ceilings
from commands.defaults import merged_layer
from commands.settings import cleared_keys
from engine.errors import InvalidParamsError
from engine.params import Limits, ModelDefaults
from engine.request import CHANNEL, CONFIG, SERVER, USER, Layer, layer_options, stack


def test_higher_layers_win_key_by_key_and_say_where_from() -> None:
    effective = stack(
        [
            Layer(SERVER, {"steps": 6, "sampler": "Euler a", "negative_prompt": "lowres"}),
            Layer(CHANNEL, {"steps": 8, "negative_prompt": ""}),  # an empty value leaves the one below
            Layer(USER, {"cfg_scale": 4.0}),
        ]
    )
    assert effective == {
        "steps": (8, CHANNEL),
        "sampler": ("Euler a", SERVER),
        "negative_prompt": ("lowres", SERVER),
        "cfg_scale": (4.0, USER),
    }


def test_a_size_and_an_aspect_ratio_replace_each_other() -> None:
    assert stack([Layer(SERVER, {"width": 640, "height": 512}), Layer(CHANNEL, {"aspect": "2:3"})]) == {
        "aspect": ("2:3", CHANNEL)
    }
    assert stack([Layer(SERVER, {"aspect": "2:3"}), Layer(USER, {"width": 640})]) == {"width": (640, USER)}
    assert merged_layer({"aspect": "2:3", "steps": 5}, {"height": 768}, set()) == {"steps": 5, "height": 768}
    assert merged_layer({"width": 640, "steps": 5}, {"aspect": "16:9"}, {"steps"}) == {"aspect": "16:9"}


def test_an_aspect_becomes_a_size_at_the_models_pixel_count() -> None:
    options = layer_options({"aspect": "2:1", "model": "x"}, model_defaults=ModelDefaults(), max_pixels=1 << 20)
    assert options == {"width": 728, "height": 360}  # about 512 x 512 pixels in multiples of 8, as --ar 2:1 gives
    with pytest.raises(InvalidParamsError, match="The aspect ratio must be between 1:4 and 4:1"):
        layer_options({"aspect": "9:1"}, model_defaults=ModelDefaults(), max_pixels=1 << 20)


def test_the_lowest_ceiling_wins_and_none_raises_the_config() -> None:
    config = Limits(max_steps=150, max_pixels=1 << 20, max_batch=4)
    here = ceilings(
        config,
        3,
        [
            Layer(SERVER, ceilings={"max_steps": 40, "max_batch": 8}),
            Layer(CHANNEL, ceilings={"max_steps": 60, "max_queue": 1}),
        ],
    )
    assert (here.limits.max_steps, here.limits.max_batch, here.limits.max_pixels, here.max_queue) == (40, 4, 1 << 20, 1)
    assert here.sources == {"max_steps": SERVER, "max_batch": CONFIG, "max_pixels": CONFIG, "max_queue": CHANNEL}
    assert here.queue_cap == 1 and ceilings(config, 3, []).queue_cap is None  # the executor holds the config's
    with pytest.raises(InvalidParamsError, match="Max batch size can be at most 4 here"):
        checked_ceilings({"max_batch": 5}, ceilings(config, 3, []))
    assert checked_ceilings({"max_batch": 2}, ceilings(config, 3, [])) == {"max_batch": 2}


def test_clear_reads_keys_labels_and_all() -> None:
    assert cleared_keys("steps, Max batch size,max-queue") == {"steps", "max_batch", "max_queue"}
    assert "negative_prompt" in cleared_keys("all") and "max_pixels" in cleared_keys("ALL")
    assert cleared_keys(None) == set()
    with pytest.raises(InvalidParamsError, match="Nothing called `stpes` to clear"):
        cleared_keys("stpes")


def test_a_lowered_pixel_ceiling_lowers_the_size_after_hires_fix_alike() -> None:
    configured = Limits(max_pixels=1024 * 1024, max_hires_pixels=4 * 1024 * 1024)
    here = ceilings(configured, 3, [Layer(CHANNEL, {}, {"max_pixels": 512 * 512})])
    assert (here.limits.max_pixels, here.limits.max_hires_pixels) == (512 * 512, 1024 * 1024)
    assert ceilings(configured, 3, []).limits.max_hires_pixels == 4 * 1024 * 1024
