"""/settings through discord.py against the stand-in: per-user defaults that /imagine uses."""

from __future__ import annotations

import asyncio

from tests.bot.harness import ALICE, BOB, SERVER_ADMIN, Harness
from tests.bot.helpers import assert_ephemeral, imagine, slash
from tests.bot.standin import CHANNEL_ID, GUILD_ID, OTHER_CHANNEL_ID, InteractionHandle, StandinUser
from tests.fakes import FakeExecutor


async def settings(
    harness: Harness, command: str, user: StandinUser = ALICE, /, **options: object
) -> InteractionHandle:
    return await slash(harness, f"settings {command}", user, **options)


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
    assert_ephemeral(harness.standin, shown, "- Steps: `6` (from you)", "- CFG scale: `4.5` (from you)")
    reset = await settings(harness, "reset")
    assert_ephemeral(harness.standin, reset, "Your defaults are gone")
    assert "(from you)" not in assert_ephemeral(harness.standin, await settings(harness, "show"), "Ceilings")
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
    assert "Your /settings default steps was not used: Steps must be between 1 and 20" in str(
        harness.standin.sent(handle, "PATCH")[-1].json
    )


# -- server and channel layers -----------------------------------------------------------------------------------


async def test_server_then_channel_then_user_then_request(harness: Harness, executor: FakeExecutor) -> None:
    await settings(harness, "server", SERVER_ADMIN, steps=6, sampler="euler a", negative_prompt="lowres")
    await settings(harness, "channel", SERVER_ADMIN, steps=8, cfg_scale=5.0)
    await imagine(harness, ALICE, prompt="in the art channel")
    handle = await harness.standin.slash("imagine", ALICE, in_channel=OTHER_CHANNEL_ID, prompt="elsewhere")
    await harness.settle(handle)
    await settings(harness, "set", BOB, steps=5)
    await imagine(harness, BOB, prompt="bob's own steps win over the channel's")
    await imagine(harness, BOB, prompt="the request wins over all", steps=3)
    here, elsewhere, bob, request = (job.params for job in executor.submitted)
    assert (here.steps, here.sampler, here.cfg_scale, here.negative_prompt) == (8, "Euler a", 5.0, "lowres")
    assert (elsewhere.steps, elsewhere.sampler, elsewhere.cfg_scale) == (6, "Euler a", 7.0)
    assert (bob.steps, bob.sampler, bob.cfg_scale) == (5, "Euler a", 5.0)
    assert request.steps == 3


async def test_show_says_where_each_value_comes_from(harness: Harness) -> None:
    await settings(harness, "server", SERVER_ADMIN, sampler="euler a", max_steps=40, aspect="2:1")
    await settings(harness, "channel", SERVER_ADMIN, steps=8, max_steps=60, max_batch=2)
    await settings(harness, "set", ALICE, cfg_scale=4.5)
    shown = await settings(harness, "show", ALICE)
    assert_ephemeral(
        harness.standin,
        shown,
        "- Model: `builtin:tiny` (from the bot's config)",
        "- Sampler: `Euler a` (from this server)",
        "- Steps: `8` (from this channel)",
        "- Aspect ratio: `2:1` (from this server)",
        "- CFG scale: `4.5` (from you)",
        "- Max steps: `40` (from this server)",  # the channel's 60 is higher: the lowest ceiling wins
        "- Max batch size: `2` (from this channel)",
        "- Max queued jobs per user: `3` (from the bot's config)",
    )


async def test_ceilings_win_over_every_layer_only_where_they_are_set(harness: Harness, executor: FakeExecutor) -> None:
    await settings(harness, "channel", SERVER_ADMIN, max_steps=10, max_batch=1)
    refused = await imagine(harness, ALICE, prompt="too many steps here", steps=20)
    assert_ephemeral(harness.standin, refused, "Steps must be between 1 and 10")
    refused = await imagine(harness, ALICE, prompt="too many images here", batch_size=2)
    assert_ephemeral(harness.standin, refused, "between 1 and 1")
    handle = await harness.standin.slash("imagine", ALICE, in_channel=OTHER_CHANNEL_ID, prompt="fine", steps=20)
    await harness.settle(handle)
    assert [job.params.steps for job in executor.submitted] == [20]
    # A member's own default is checked where it is set: over this channel's ceiling, it is refused.
    over = await settings(harness, "set", BOB, steps=30)
    assert_ephemeral(harness.standin, over, "Steps must be between 1 and 10")
    assert harness.store is not None and harness.store.user_defaults(BOB.id) == {}


async def test_a_channel_queue_ceiling_refuses_and_says_when_a_slot_frees(
    harness: Harness, executor: FakeExecutor
) -> None:
    await settings(harness, "channel", SERVER_ADMIN, max_queue=1)
    executor.hold = asyncio.Event()  # the first job keeps its place until the end
    first = await harness.standin.slash("imagine", ALICE, prompt="first")
    await harness.standin.callback(first)
    refused = await harness.standin.slash("imagine", ALICE, prompt="second")
    await harness.standin.callback(refused)
    assert_ephemeral(harness.standin, refused, "the limit here is 1")
    elsewhere = await harness.standin.slash("imagine", ALICE, in_channel=OTHER_CHANNEL_ID, prompt="elsewhere")
    await harness.standin.callback(elsewhere)
    executor.hold.set()
    await harness.settle()
    assert [job.params.prompt for job in executor.submitted] == ["first", "elsewhere"]


async def test_admins_only_lower_limits_and_members_cannot_change_layers(harness: Harness) -> None:
    refused = await settings(harness, "server", ALICE, steps=6)
    assert_ephemeral(harness.standin, refused, "Only an Easel admin can change this server's settings.")
    raised = await settings(harness, "server", SERVER_ADMIN, max_steps=500)
    assert_ephemeral(harness.standin, raised, "Max steps can be at most 150 here (the bot's config)")
    over = await settings(harness, "channel", SERVER_ADMIN, max_steps=10, steps=20)
    assert_ephemeral(harness.standin, over, "Steps must be between 1 and 10")
    unknown = await settings(harness, "server", SERVER_ADMIN, model="nope")
    assert "nope" in assert_ephemeral(harness.standin, unknown)
    assert harness.store is not None
    assert harness.store.scope_settings(f"guild:{GUILD_ID}") == ({}, {})
    assert harness.store.scope_settings(f"channel:{CHANNEL_ID}") == ({}, {})


async def test_layers_survive_a_restart_and_clear_removes_named_settings(
    harness: Harness, executor: FakeExecutor
) -> None:
    await settings(harness, "server", SERVER_ADMIN, steps=6, aspect="2:1", max_batch=2, cfg_scale=3.0)
    await harness.restart()
    await imagine(harness, ALICE, prompt="after a restart")
    params = executor.submitted[-1].params
    assert (params.steps, params.cfg_scale) == (6, 3.0)
    assert abs(params.width / params.height - 2) < 0.1  # 2:1 at the model's own pixel count
    cleared = await settings(harness, "server", SERVER_ADMIN, clear="steps, Max batch size, aspect")
    assert "Steps" not in assert_ephemeral(harness.standin, cleared, "- CFG scale: `3.0`")
    assert harness.store is not None
    assert harness.store.scope_settings(f"guild:{GUILD_ID}") == ({"cfg_scale": 3.0}, {})
    bad = await settings(harness, "server", SERVER_ADMIN, clear="stpes")
    assert_ephemeral(harness.standin, bad, "Nothing called `stpes` to clear")


async def test_the_server_default_model_is_shared_with_model_set(harness: Harness) -> None:
    await settings(harness, "server", SERVER_ADMIN, model="builtin:tiny")
    assert harness.store is not None and harness.store.guild_default_model(GUILD_ID) == "builtin:tiny"
    shown = await settings(harness, "show", ALICE)
    assert_ephemeral(harness.standin, shown, "- Model: `builtin:tiny` (from this server)")


async def test_a_distilled_cfg_default_and_the_guidance_flag_reach_the_job(
    harness: Harness, executor: FakeExecutor
) -> None:
    handle = await settings(harness, "set", distilled_cfg_scale=2.5)
    assert_ephemeral(harness.standin, handle, "- Distilled CFG scale: `2.5`")
    await imagine(harness, ALICE, prompt="a red fox")
    await imagine(harness, ALICE, prompt="a red fox --guidance 4")
    first, second = (job.params for job in executor.submitted)
    assert (first.distilled_cfg_scale, second.distilled_cfg_scale) == (2.5, 4.0)
