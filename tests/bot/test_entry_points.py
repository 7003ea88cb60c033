"""Every way to ask for a job goes through the one resolver: the same pre-checks (an unknown LoRA is refused before
anything is queued, with the closest names) from /imagine, the Edit form, Reroll, Vary, /show and Parameters' Run
again, and one `build_params` per request. Through discord.py against the stand-in."""

from __future__ import annotations

from tests.bot.harness import ALICE, BOB, Harness
from tests.bot.helpers import assert_ephemeral, click, imagine, job_id_of, slash
from tests.bot.standin import InteractionHandle
from tests.fakes import FakeExecutor, FakeLora, FakeNetworks

BLOCK = "a red fox <lora:green:0.5>\nSteps: 3, Sampler: Euler a, Seed: 7, Size: 64x64"
UNKNOWN = "Unknown LoRA 'grene'. Closest: green."


async def submit_edit(harness: Harness, first: InteractionHandle, **changes: str) -> InteractionHandle:
    message = harness.standin.original(first)
    clicked = await harness.standin.click(int(message["id"]), f"easel:edit:{job_id_of(harness.standin, first)}", BOB)
    await harness.settle(clicked)
    ids = [label["component"]["custom_id"] for label in harness.standin.modal(clicked)["components"]]
    values = {name: changes[name] for name in ("prompt", "negative", "box") if name in changes}
    fields = {ids[("prompt", "negative", "box").index(name)]: value for name, value in values.items()}
    submitted = await harness.standin.submit_modal(clicked, **fields)
    await harness.settle(submitted)
    return submitted


async def test_imagine_builds_once_and_refuses_an_unknown_lora_with_the_closest(
    harness: Harness, executor: FakeExecutor, builds: list[object]
) -> None:
    await slash(harness, "settings set", ALICE, steps=5, cfg_scale=6.0)
    builds.clear()  # /settings checks what it stores; the request starts here
    await imagine(harness, prompt="a cat --ar 2:1", parameters=BLOCK, lora="green")
    assert len(builds) == 1 and len(executor.submitted) == 1
    refused = await imagine(harness, prompt="a cat <lora:grene:1>")
    assert_ephemeral(harness.standin, refused, UNKNOWN)
    assert len(executor.submitted) == 1


async def test_the_edit_form_builds_once_and_refuses_an_unknown_lora_before_queueing(
    harness: Harness, executor: FakeExecutor, builds: list[object]
) -> None:
    first = await imagine(harness, prompt="a red fox", seed="42")
    builds.clear()
    await submit_edit(harness, first, prompt="a red fox, (winter:1.2) --no snow")
    assert len(builds) == 1 and executor.submitted[1].params.negative_prompt == "snow"
    refused = await submit_edit(harness, first, prompt="a red fox <lora:grene:1>")
    assert_ephemeral(harness.standin, refused, UNKNOWN)
    assert len(executor.submitted) == 2


async def test_reroll_vary_and_show_build_once_and_refuse_a_lora_removed_since(
    harness: Harness, executor: FakeExecutor, networks: FakeNetworks, builds: list[object]
) -> None:
    first = await imagine(harness, prompt="a red fox <lora:green:1>", seed="42")
    builds.clear()
    await click(harness, first, "reroll", ALICE)
    assert len(builds) == 1 and len(executor.submitted) == 2
    networks.loras_ = [FakeLora("greener")]  # an admin removed the LoRA the job used
    for action in ("reroll", "vary"):
        refused = await click(harness, first, action, ALICE)
        assert_ephemeral(harness.standin, refused, "Unknown LoRA 'green'. Closest: greener.")
    shown = await slash(harness, "show", ALICE, job_id=job_id_of(harness.standin, first))
    assert_ephemeral(harness.standin, shown, "Unknown LoRA 'green'")
    assert len(executor.submitted) == 2


async def test_parameters_run_again_builds_once_and_refuses_an_unknown_lora(
    harness: Harness, executor: FakeExecutor, networks: FakeNetworks, builds: list[object]
) -> None:
    first = await imagine(harness, ALICE, prompt="a red fox <lora:green:1>", seed="42", steps=3)
    result_id = int(harness.standin.original(first)["id"])
    handle = await harness.standin.message_command("Parameters", BOB, result_id)
    await harness.settle(handle)
    reply_id = int(harness.standin.original(handle)["id"])
    builds.clear()
    again = await harness.standin.click(reply_id, "easel:pinfo:run", BOB)
    await harness.settle(again)
    assert len(builds) == 1 and executor.submitted[1].params.prompt == executor.submitted[0].params.prompt
    networks.loras_ = []
    refused = await harness.standin.click(reply_id, "easel:pinfo:run", BOB)
    await harness.settle(refused)
    assert_ephemeral(harness.standin, refused, "Unknown LoRA 'green'")
    assert len(executor.submitted) == 2
