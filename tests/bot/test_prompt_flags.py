"""Midjourney-style flags at the end of /imagine's prompt, through discord.py against the stand-in."""

from __future__ import annotations

from tests.bot.harness import Harness
from tests.bot.helpers import assert_ephemeral, edits, imagine
from tests.fakes import FakeExecutor


async def test_prompt_flags_set_the_options_and_leave_the_prompt(harness: Harness, executor: FakeExecutor) -> None:
    handle = await imagine(
        harness, prompt="a lighthouse --ar 2:1 --no text, people --seed 7 --steps 3 --cfg 5.5", negative_prompt="blur"
    )
    params = executor.submitted[0].params
    assert params.prompt == "a lighthouse" and params.negative_prompt == "blur, text, people"
    assert (params.width, params.height, params.seed, params.steps, params.cfg_scale) == (128, 64, 7, 3, 5.5)
    assert "Seed: 7" in edits(harness.standin, handle)[-1].json["content"]


async def test_explicit_slash_options_win_over_prompt_flags(harness: Harness, executor: FakeExecutor) -> None:
    await imagine(harness, prompt="a lighthouse --seed 7 --steps 3 --ar 2:1", seed="9", steps=2, width=64)
    params = executor.submitted[0].params
    assert (params.seed, params.steps, params.width, params.height) == (9, 2, 64, 64)


async def test_an_unknown_flag_is_refused_and_nothing_is_queued(harness: Harness, executor: FakeExecutor) -> None:
    handle = await imagine(harness, prompt="a lighthouse --chaos 40")
    assert_ephemeral(harness.standin, handle, "Unknown flag `--chaos`", "--ar W:H")
    assert executor.submitted == []
