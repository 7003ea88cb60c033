"""What users sent that once escaped Easel's errors (a traceback in the log, "something went wrong" for them), now
each refused with Easel's own message, short enough for a Discord reply, with no server path in it."""

from __future__ import annotations

import pytest

from engine.errors import InvalidParamsError, short_reason
from engine.params import Limits, build_params
from engine.paste import read_pasted
from engine.pipeline import DiffusersEngine
from tests.engine.conftest import tiny_params


def build(**options: object) -> None:
    build_params({"prompt": "a", **options}, model="m", limits=Limits())


def test_old_hires_fix_pastes_that_crashed_are_refused_with_a_message() -> None:
    with pytest.raises(InvalidParamsError, match=r"^Size 0x8 is not a size"):
        read_pasted("a\nSteps: 1, Seed: 2, Size: 0x8, First pass size: 0x0")
    with pytest.raises(InvalidParamsError, match=r"^First pass size must be a size such as `512x768`"):
        read_pasted("a\nSteps: 1, Seed: 2, First pass size: 1x" + "9" * 4301)


def test_an_old_hires_fix_paste_still_reads_as_a1111_reads_it() -> None:
    options = read_pasted("a\nSteps: 1, Seed: 2, Size: 1024x768, First pass size: 0x0").options
    assert (options["width"], options["height"]) == (640, 448)


def test_ensd_out_of_range_and_a_lone_surrogate_are_refused() -> None:
    with pytest.raises(InvalidParamsError, match=r"^ENSD must be between 0 and 18446744073709551615"):
        build(ensd="1" + "0" * 30)
    with pytest.raises(InvalidParamsError, match=r"^Prompt has a character that is not text at position 2 \(U\+D800\)"):
        build(prompt="a\ud800b")
    with pytest.raises(InvalidParamsError, match=r"^Negative prompt has a character"):
        build(negative_prompt="\udfff")


@pytest.mark.parametrize("key", ["seed", "steps", "cfg_scale", "sampler", "rng", "enable_hr", "clip_skip"])
def test_a_long_value_is_quoted_cut_short(key: str) -> None:
    with pytest.raises(InvalidParamsError) as refused:
        build(**{key: "7" * 1200 + "x" * 1300})
    assert len(str(refused.value)) < 400


def test_library_errors_never_show_where_the_server_keeps_files() -> None:
    err = OSError("Error while deserializing header: /srv/easel/models/sdxl/half.safetensors is too short")
    assert short_reason(err) == "Error while deserializing header: half.safetensors is too short"
    assert short_reason(OSError(r"cannot open C:\easel\models\x.ckpt")) == "cannot open x.ckpt"


@pytest.mark.slow
def test_clip_skip_past_the_text_encoders_layers_is_refused_with_the_range(engine: DiffusersEngine) -> None:
    with pytest.raises(InvalidParamsError, match=r"^Clip skip 12 is more than this model's text encoder has layers"):
        engine.generate(tiny_params(clip_skip=12))
