"""/settings through discord.py against the stand-in: per-user defaults that /imagine uses."""

from __future__ import annotations

from tests.bot.harness import ALICE, BOB, Harness
from tests.bot.helpers import assert_ephemeral, imagine
from tests.bot.standin import InteractionHandle, StandinUser
from tests.fakes import FakeExecutor


async def settings(harness: Harness, command: str, user: StandinUser = ALICE, **options: object) -> InteractionHandle:
    handle = await harness.standin.slash(f"settings {command}", user, **options)
    await harness.settle(handle)
    return handle


async def test_defaults_are_used_by_imagine_for_that_user_only(harness: Harness, executor: FakeExecutor) -> None:
    handle = await settings(harness, "set", steps=6, sampler="euler a", negative_prompt="lowres", width=96)
    assert_ephemeral(harness.standin, handle, "- Sampler: `Euler a`", "- Steps: `6`", "- Width: `96`")
    await imagine(harness, ALICE, prompt="a red fox")
    await imagine(harness, BOB, prompt="a red fox")
    mine, theirs = (job.params for job in executor.submitted)
    assert (mine.steps, mine.sampler, mine.negative_prompt, mine.width) == (6, "Euler a", "lowres", 96)
    assert (theirs.steps, theirs.sampler, theirs.negative_prompt, theirs.width) == (4, "DPM++ 2M", "", 64)


async def test_request_options_win_over_user_defaults(harness: Harness, executor: FakeExecutor) -> None:
    await settings(harness, "set", steps=6, cfg_scale=4.0)
    await imagine(harness, ALICE, prompt="a red fox --cfg 9", steps=3)
    params = executor.submitted[0].params
    assert (params.steps, params.cfg_scale) == (3, 9.0)


async def test_set_merges_show_lists_and_reset_forgets(harness: Harness, executor: FakeExecutor) -> None:
    await settings(harness, "set", steps=6)
    await settings(harness, "set", cfg_scale=4.5)
    shown = await settings(harness, "show")
    assert_ephemeral(harness.standin, shown, "- Steps: `6`", "- CFG scale: `4.5`")
    reset = await settings(harness, "reset")
    assert_ephemeral(harness.standin, reset, "Your defaults are gone")
    assert_ephemeral(harness.standin, await settings(harness, "show"), "no defaults")
    await imagine(harness, ALICE, prompt="a red fox")
    assert executor.submitted[0].params.steps == 4


async def test_defaults_over_the_servers_limits_are_refused(harness: Harness) -> None:
    handle = await settings(harness, "set", width=4096)
    assert_ephemeral(harness.standin, handle, "Width must be between 64 and 2048")
    assert harness.store is not None and harness.store.user_defaults(ALICE.id) == {}


async def test_defaults_broken_by_a_lowered_limit_are_skipped_with_a_note(
    harness: Harness, executor: FakeExecutor
) -> None:
    assert harness.store is not None
    harness.store.set_user_defaults(ALICE.id, {"steps": 149})
    harness.settings = harness.settings.model_copy(update={"max_steps": 20})  # an admin lowers the limit
    await harness.restart()
    handle = await imagine(harness, ALICE, prompt="a red fox")
    assert executor.submitted[0].params.steps == 4
    assert "Your /settings defaults were not used: Steps must be between 1 and 20" in str(
        harness.standin.sent(handle, "PATCH")[-1].json
    )
