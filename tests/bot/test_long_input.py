"""Whatever a user sends, every reply, edit and follow-up fits Discord's 2,000 characters (the stand-in refuses a
longer one as Discord does, with 400 Invalid Form Body): over-long values are quoted cut short, and a job's
progress text stays bounded however many notes a paste makes. Through discord.py against the stand-in."""

from __future__ import annotations

import pytest

from tests.bot.harness import Harness
from tests.bot.helpers import assert_ephemeral, contents, edits, imagine
from tests.fakes import FakeExecutor

LONG = {
    "seed": "9" * 2500,
    "sampler": "x" * 2500,
    "schedule": "y" * 2500,
    "style": "s" * 2500,
    "vae": "v" * 2500,
    "model": "m" * 2500,
    "lora": "l" * 2500,
}


@pytest.mark.parametrize("option", sorted(LONG))
async def test_an_over_long_option_is_answered_with_a_refusal_that_fits(
    harness: Harness, executor: FakeExecutor, option: str
) -> None:
    handle = await imagine(harness, prompt="a fox", **{option: LONG[option]})
    text = assert_ephemeral(harness.standin, handle)
    assert 0 < len(text) <= 2000 and executor.submitted == []
    assert all(r.status < 400 for r in harness.standin.sent(handle))


async def test_a_5000_digit_pasted_field_is_answered(harness: Harness, executor: FakeExecutor) -> None:
    handle = await imagine(harness, prompt="a fox\nSteps: " + "9" * 5000 + ", Sampler: Euler, Seed: 1")
    assert len(assert_ephemeral(harness.standin, handle, "Steps must be")) <= 2000
    assert executor.submitted == []


async def test_a_paste_of_640_fields_is_drawn_and_every_edit_fits(harness: Harness, executor: FakeExecutor) -> None:
    fields = ", ".join(f"F{n}: {n}" for n in range(640))
    handle = await imagine(harness, prompt=f"a fox\nSteps: 3, Sampler: Euler, Seed: 1, {fields}")
    assert len(executor.submitted) == 1
    sent = edits(harness.standin, handle)
    assert sent and all(r.status == 200 for r in sent)
    assert all(len(text) <= 2000 for text in contents(harness.standin, handle))
    assert "more notes on how the request was read" in contents(harness.standin, handle)[0]
    assert sent[-1].files  # the images were delivered
