"""The bot through discord.py itself, against the local stand-in: assertions are on what was actually sent."""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image

from bot.store import JobStatus
from tests.bot.harness import ALICE, BOB, LISTED_ADMIN, ROLE_ADMIN, SERVER_ADMIN, Harness, make_settings
from tests.bot.helpers import (
    PNG_MAGIC,
    assert_ephemeral,
    callback_of,
    click,
    contents,
    edits,
    imagine,
    job_id_of,
)
from tests.bot.spec import find_operation, validation_errors
from tests.bot.standin import (
    CHANNEL_ID,
    GUILD_ID,
    Recorded,
    Standin,
    StandinUser,
    custom_ids,
)
from tests.fakes import FakeExecutor, FakeRegistry

# -- start-up ---------------------------------------------------------------------------------------------------


async def test_commands_are_synced_to_the_dev_guild(harness: Harness) -> None:
    [sync] = [r for r in harness.standin.requests if r.method == "PUT"]
    assert sync.path == f"/applications/1100000000000000001/guilds/{GUILD_ID}/commands"
    by_name = {c["name"]: c for c in sync.json}
    assert set(by_name) == {
        "Parameters",
        "Describe",
        "describe",
        "about",
        "admin",
        "help",
        "imagine",
        "info",
        "lora",
        "model",
        "nsfw",
        "settings",
        "show",
        "style",
        "upscale",
    }
    assert {o["name"] for o in by_name["settings"]["options"]} == {"set", "show", "reset", "server", "channel"}
    init_image = next(o for o in by_name["imagine"]["options"] if o["name"] == "init_image")
    assert init_image["type"] == 11  # an attachment
    seed = next(o for o in by_name["imagine"]["options"] if o["name"] == "seed")
    assert seed["type"] == 3  # a string: seeds go past Discord's integer range
    assert str(by_name["model"]["default_member_permissions"]) == "8"  # hidden from non-admins
    assert {o["name"] for o in by_name["model"]["options"]} == {"list", "set", "refresh"}
    assert str(by_name["admin"]["default_member_permissions"]) == "8"


async def test_a_restart_with_unchanged_commands_does_not_sync_again(harness: Harness) -> None:
    await harness.restart()
    assert len([r for r in harness.standin.requests if r.method == "PUT"]) == 1


async def test_the_start_up_flag_syncs_even_unchanged_commands(harness: Harness) -> None:
    harness.sync_commands = True
    await harness.restart()
    assert len([r for r in harness.standin.requests if r.method == "PUT"]) == 2


async def test_an_admin_syncs_the_commands_on_demand(harness: Harness) -> None:
    handle = await harness.standin.slash("admin sync", LISTED_ADMIN)
    await harness.settle(handle)
    assert len([r for r in harness.standin.requests if r.method == "PUT"]) == 2
    assert "Synced 15 command(s)" in str(harness.standin.sent(handle)[-1].json)


async def test_a_member_cannot_sync_the_commands(harness: Harness) -> None:
    handle = await harness.standin.slash("admin sync", ALICE)
    await harness.settle(handle)
    assert len([r for r in harness.standin.requests if r.method == "PUT"]) == 1
    assert "Only an Easel admin" in str(harness.standin.sent(handle)[-1].json)


async def test_a_command_extension_that_fails_to_load_does_not_take_the_others_down(
    standin: Standin, executor: FakeExecutor, registry: FakeRegistry, tmp_path: Path
) -> None:
    rig = Harness(standin, make_settings(standin, tmp_path / "data"), executor, registry)
    rig.extensions = ("tests.bot.broken_extension", "commands.imagine")
    await rig.start()
    try:
        [sync] = [r for r in standin.requests if r.method == "PUT"]
        assert [c["name"] for c in sync.json] == ["imagine"]
    finally:
        await rig.stop()


# -- /imagine ---------------------------------------------------------------------------------------------------


async def test_imagine_defers_then_shows_queue_progress_and_result(harness: Harness) -> None:
    standin = harness.standin
    handle = await imagine(harness, prompt="a red fox", seed="42")

    assert callback_of(standin, handle) == {"type": 5}  # "thinking", within the 3 s
    texts = contents(standin, handle)
    assert "Queued" in texts[0] and "seed 42" in texts[0]
    assert any("step 1/4" in t for t in texts) and any("step 4/4" in t for t in texts)
    final = edits(standin, handle)[-1]
    assert final.multipart and final.json["attachments"] == [{"id": 0, "filename": final.files[0].filename}]
    assert "```\na red fox\nSteps: 4" in final.json["content"] and "Seed: 42" in final.json["content"]


async def test_result_is_a_real_png_upload(harness: Harness) -> None:
    handle = await imagine(harness, prompt="a red fox", seed="42", width=64, height=96)
    [upload] = edits(harness.standin, handle)[-1].files
    assert upload.field == "files[0]" and upload.filename.endswith(".png")
    assert upload.data.startswith(PNG_MAGIC)
    assert Image.open(io.BytesIO(upload.data)).size == (64, 96)
    assert harness.standin.original(handle)["attachments"][0]["filename"] == upload.filename


async def test_result_has_reroll_vary_edit_delete_and_both_upscales_with_job_ids(harness: Harness) -> None:
    handle = await imagine(harness, prompt="a red fox")
    job_id = job_id_of(harness.standin, handle)
    message = harness.standin.original(handle)
    assert custom_ids(message) == [
        *(f"easel:{action}:{job_id}" for action in ("reroll", "vary", "edit", "delete", "fixfaces")),
        f"easel:subtle:{job_id}:0",
        f"easel:upscale:{job_id}:0",
        f"easel:region:{job_id}:0",
        *(f"easel:out{k}:{job_id}:0" for k in ("zoom2", "zoom15", "custom", "square", "left", "right", "up", "down")),
    ]
    labels = [[c.get("label") for c in row["components"]] for row in message["components"]]
    assert labels == [
        ["Reroll", "Vary", "Edit", "Delete", "Fix faces"],
        ["Upscale (Subtle)", "Upscale (Creative)", "Vary (Region)"],
        ["Zoom Out 2×", "Zoom Out 1.5×", "Custom Zoom", "Make Square"],
        [None, None, None, None],  # ⬅ ➡ ⬆ ⬇ as emoji alone
    ]
    assert harness.store is not None
    record = harness.store.get_job(job_id)
    assert record is not None and record.status is JobStatus.FINISHED and record.user_id == ALICE.id


async def test_a_random_seed_is_chosen_before_queueing_and_reported(harness: Harness, executor: FakeExecutor) -> None:
    handle = await imagine(harness, prompt="a red fox", seed="-1")
    seed = executor.submitted[0].params.seed
    assert f"seed {seed}" in contents(harness.standin, handle)[0]
    assert f"Seed: {seed}" in contents(harness.standin, handle)[-1]


async def test_seed_above_discords_integer_range_is_accepted(harness: Harness, executor: FakeExecutor) -> None:
    await imagine(harness, prompt="a red fox", seed=str(2**64 - 1))
    assert executor.submitted[0].params.seed == 2**64 - 1


async def test_bad_option_is_refused_ephemerally_and_nothing_is_queued(
    harness: Harness, executor: FakeExecutor
) -> None:
    handle = await imagine(harness, prompt="a red fox", width=100)
    assert_ephemeral(harness.standin, handle, "Width must be a multiple of 8")
    assert executor.submitted == []
    assert edits(harness.standin, handle) == []


async def test_full_queue_is_refused_ephemerally(harness: Harness, executor: FakeExecutor) -> None:
    executor.full = True
    handle = await imagine(harness, prompt="a red fox")
    assert_ephemeral(harness.standin, handle, "queue is full")
    assert edits(harness.standin, handle) == []


async def test_unknown_model_is_refused_with_close_names(harness: Harness, executor: FakeExecutor) -> None:
    handle = await imagine(harness, prompt="a red fox", model="anime-v4")
    assert_ephemeral(harness.standin, handle, "anime-v3")
    assert executor.submitted == []


async def test_failed_job_shows_a_short_error_and_other_jobs_finish(harness: Harness, executor: FakeExecutor) -> None:
    executor.fail_prompts.add("boom")
    bad = await harness.standin.slash("imagine", ALICE, prompt="boom")
    good = await harness.standin.slash("imagine", BOB, prompt="a calm lake")
    await harness.settle(bad)
    await harness.settle(good)
    bad_final = contents(harness.standin, bad)[-1]
    assert bad_final.startswith("❌ Out of memory") and "Traceback" not in bad_final
    assert harness.standin.original(bad)["components"] == []
    assert edits(harness.standin, good)[-1].files


async def test_pasted_parameter_block_in_prompt_is_used_and_unsupported_fields_reported(
    harness: Harness, executor: FakeExecutor
) -> None:
    block = (
        "a cat, masterpiece\nNegative prompt: blurry\n"
        "Steps: 5, Sampler: Euler a, CFG scale: 6.5, Seed: 7, Size: 64x64, Model: anime-v3, Hires upscale: 2"
    )
    handle = await imagine(harness, prompt=block)
    params = executor.submitted[0].params
    assert (params.prompt, params.negative_prompt, params.steps, params.seed) == ("a cat, masterpiece", "blurry", 5, 7)
    assert (params.sampler, params.cfg_scale, params.model) == ("Euler a", 6.5, "anime-v3")
    assert "Hires upscale: 2 is not supported" in contents(harness.standin, handle)[-1]


async def test_parameters_option_with_explicit_options_overriding_it(harness: Harness, executor: FakeExecutor) -> None:
    block = "old prompt\nSteps: 5, Sampler: Euler, Seed: 7, Size: 64x64, Model: not-here"
    handle = await imagine(harness, prompt="a new prompt", parameters=block, steps=3)
    params = executor.submitted[0].params
    assert (params.prompt, params.steps, params.seed, params.sampler) == ("a new prompt", 3, 7, "Euler")
    assert "pasted model `not-here` is not available" in contents(harness.standin, handle)[-1]


async def test_autocomplete_offers_samplers_and_usable_models(harness: Harness) -> None:
    standin = harness.standin
    sampler = await standin.autocomplete("imagine", ALICE, "sampler", prompt="x", sampler="euler")
    model = await standin.autocomplete("imagine", ALICE, "model", prompt="x", model="")
    sampler_body, model_body = (await standin.callback(sampler)).json, (await standin.callback(model)).json
    assert sampler_body["type"] == 8
    assert [c["value"] for c in sampler_body["data"]["choices"]] == ["Euler a", "Euler"]
    assert [c["value"] for c in model_body["data"]["choices"]] == ["builtin:tiny", "anime-v3", "photo-xl"]


async def test_job_outliving_the_interaction_token_posts_a_channel_message(
    standin: Standin, executor: FakeExecutor, registry: FakeRegistry, tmp_path: Path
) -> None:
    rig = Harness(standin, make_settings(standin, tmp_path), executor, registry, token_lifetime=timedelta(0))
    await rig.start()
    try:
        handle = await standin.slash("imagine", ALICE, prompt="a slow one")
        standin.expired_tokens.add(handle.token)  # what Discord does after 15 minutes
        await rig.settle(handle)
    finally:
        await rig.stop()
    assert edits(standin, handle) == []
    [post] = [r for r in standin.requests if r.method == "POST" and r.path == f"/channels/{CHANNEL_ID}/messages"]
    assert post.json["content"].startswith(f"<@{ALICE.id}> Done")
    assert [str(u) for u in post.json["allowed_mentions"]["users"]] == [str(ALICE.id)]
    assert post.files[0].data.startswith(PNG_MAGIC)
    assert [c["custom_id"].split(":")[1] for c in post.json["components"][0]["components"]] == [
        "reroll",
        "vary",
        "edit",
        "delete",
        "fixfaces",
    ]


async def test_progress_edits_are_throttled(
    standin: Standin, executor: FakeExecutor, registry: FakeRegistry, tmp_path: Path
) -> None:
    rig = Harness(standin, make_settings(standin, tmp_path), executor, registry, edit_interval=60.0)
    await rig.start()
    try:
        handle = await standin.slash("imagine", ALICE, prompt="a red fox", steps=20)
        await rig.settle(handle)
    finally:
        await rig.stop()
    texts = contents(standin, handle)
    assert len(texts) == 3  # queued, started, final: the 20 progress steps came within one interval
    assert "Queued" in texts[0] and "Starting" in texts[1] and texts[2].startswith("Done")


# -- buttons ----------------------------------------------------------------------------------------------------


async def test_reroll_runs_the_same_params_with_a_new_seed(harness: Harness, executor: FakeExecutor) -> None:
    first = await imagine(harness, prompt="a red fox", seed="42", steps=3)
    again = await click(harness, first, "reroll", BOB)
    original, reroll = (job.params for job in executor.submitted)
    assert reroll.seed != 42 and reroll.replace(seed=42) == original
    assert callback_of(harness.standin, again) == {"type": 5}
    final = edits(harness.standin, again)[-1]
    assert f"Seed: {reroll.seed}" in final.json["content"] and final.files[0].data.startswith(PNG_MAGIC)
    assert executor.submitted[1].user_id == str(BOB.id)  # the clicker owns the new job


async def test_vary_keeps_the_seed_and_adds_a_variation_seed(harness: Harness, executor: FakeExecutor) -> None:
    first = await imagine(harness, prompt="a red fox", seed="42")
    varied = await click(harness, first, "vary", ALICE)
    params = executor.submitted[1].params
    assert (params.seed, params.subseed_strength) == (42, 0.15) and params.subseed > 0
    final = contents(harness.standin, varied)[-1]
    assert f"Variation seed: {params.subseed}" in final and "Variation seed strength: 0.15" in final


async def test_delete_by_the_requester_removes_the_message(harness: Harness) -> None:
    first = await imagine(harness, prompt="a red fox")
    message_id = int(harness.standin.original(first)["id"])
    job_id = job_id_of(harness.standin, first)
    deleted = await click(harness, first, "delete", ALICE)
    await harness.standin.wait_for(lambda r: r.is_for(deleted) and r.method == "DELETE")
    assert callback_of(harness.standin, deleted) == {"type": 6}
    assert [r.method for r in harness.standin.sent(deleted) if r.path.endswith("@original")] == ["DELETE"]
    assert message_id not in harness.standin.messages
    assert harness.store is not None
    record = harness.store.get_job(job_id)
    assert record is not None and record.status is JobStatus.DELETED


async def test_delete_is_refused_for_another_user(harness: Harness) -> None:
    first = await imagine(harness, prompt="a red fox")
    message_id = int(harness.standin.original(first)["id"])
    refused = await click(harness, first, "delete", BOB)
    assert_ephemeral(harness.standin, refused, "Only the person who asked")
    assert message_id in harness.standin.messages


@pytest.mark.parametrize("admin", [LISTED_ADMIN, ROLE_ADMIN, SERVER_ADMIN], ids=["user-id", "role", "permission"])
async def test_delete_is_allowed_for_an_admin(harness: Harness, admin: StandinUser) -> None:
    first = await imagine(harness, prompt="a red fox")
    message_id = int(harness.standin.original(first)["id"])
    deleted = await click(harness, first, "delete", admin)
    await harness.standin.wait_for(lambda r: r.is_for(deleted) and r.method == "DELETE")
    assert message_id not in harness.standin.messages


async def test_cancel_button_stops_a_running_job(harness: Harness, executor: FakeExecutor) -> None:
    standin = harness.standin
    executor.hold = hold = asyncio.Event()
    handle = await standin.slash("imagine", ALICE, prompt="a long one")
    await standin.wait_for(lambda r: r.is_for(handle) and "Starting" in str(r.json))
    message = standin.original(handle)
    [cancel_id] = custom_ids(message)
    assert cancel_id.startswith("easel:cancel:")
    clicked = await standin.click(int(message["id"]), cancel_id, ALICE)
    await harness.settle(clicked)
    hold.set()
    await harness.settle(handle)
    assert callback_of(standin, clicked) == {"type": 6}
    assert contents(standin, handle)[-1].startswith("🚫 Cancelled")
    assert executor.cancelled == {executor.submitted[0].job_id}


async def test_buttons_keep_working_after_a_restart(harness: Harness, executor: FakeExecutor) -> None:
    first = await imagine(harness, prompt="a red fox", seed="42")
    old_bot = harness.bot
    await harness.restart()  # a new EaselBot, same data dir: state comes from the job store
    assert harness.bot is not old_bot
    again = await click(harness, first, "vary", ALICE)
    assert executor.submitted[1].params.seed == 42
    assert edits(harness.standin, again)[-1].files


async def test_button_for_an_unknown_job_says_so(harness: Harness) -> None:
    first = await imagine(harness, prompt="a red fox")
    message = harness.standin.original(first)
    message["components"][0]["components"][0]["custom_id"] = "easel:reroll:0123456789ab"
    clicked = await harness.standin.click(int(message["id"]), "easel:reroll:0123456789ab", ALICE)
    await harness.settle(clicked)
    assert_ephemeral(harness.standin, clicked, "no longer known")


async def test_unexpected_error_is_logged_with_the_job_id_and_hidden_from_the_user(
    harness: Harness, registry: FakeRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    first = await imagine(harness, prompt="a red fox")
    job_id = job_id_of(harness.standin, first)
    registry.broken = True
    clicked = await click(harness, first, "reroll", ALICE)
    text = assert_ephemeral(harness.standin, clicked, "Something went wrong")
    assert "registry bug" not in text and "Traceback" not in text
    [record] = [r for r in caplog.records if r.name == "bot.errors"]
    assert f"(job {job_id})" in record.getMessage() and record.exc_info is not None


# -- /model -----------------------------------------------------------------------------------------------------


async def test_model_list_shows_usable_and_refused_models(harness: Harness) -> None:
    handle = await harness.standin.slash("model list", LISTED_ADMIN)
    await harness.settle(handle)
    text = assert_ephemeral(harness.standin, handle, "`anime-v3`", "`photo-xl`")
    assert "`builtin:tiny` (builtin, SD 1.x) ← default" in text and "`photo-xl` (diffusers, SDXL)" in text
    assert "`old-model`: pickle checkpoint" in text


async def test_model_set_changes_what_imagine_uses(harness: Harness, executor: FakeExecutor) -> None:
    handle = await harness.standin.slash("model set", ROLE_ADMIN, name="photo-xl")
    await harness.settle(handle)
    assert_ephemeral(harness.standin, handle, "now `photo-xl`")
    await imagine(harness, prompt="a red fox")
    assert executor.submitted[0].params.model == "photo-xl"


async def test_model_commands_are_refused_for_a_non_admin(harness: Harness) -> None:
    handle = await harness.standin.slash("model set", BOB, name="photo-xl")
    await harness.settle(handle)
    assert_ephemeral(harness.standin, handle, "Only an Easel admin")
    assert harness.store is not None and harness.store.guild_default_model(GUILD_ID) is None


async def test_model_set_autocomplete_lists_usable_models(harness: Harness) -> None:
    handle = await harness.standin.autocomplete("model set", LISTED_ADMIN, "name", name="ph")
    body = (await harness.standin.callback(handle)).json
    assert [c["value"] for c in body["data"]["choices"]] == ["photo-xl"]


# -- the spec check itself --------------------------------------------------------------------------------------


def test_spec_check_rejects_a_malformed_body() -> None:
    assert find_operation("PATCH", "/webhooks/1/tok/messages/@original").template.endswith("@original")
    bad = Recorded("POST", "/interactions/1/tok/callback", {}, {"type": "five"})
    assert validation_errors(bad)
    good = Recorded("POST", "/interactions/1/tok/callback", {}, {"type": 5})
    assert validation_errors(good) == []
