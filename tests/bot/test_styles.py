"""/style and /imagine style: through discord.py against the stand-in."""

from __future__ import annotations

from engine.infotext import create_infotext
from tests.bot.harness import ALICE, SERVER_ADMIN, Harness
from tests.bot.helpers import assert_ephemeral, imagine, slash
from tests.bot.standin import GUILD_ID, InteractionHandle, StandinUser
from tests.fakes import FakeExecutor


async def style(
    harness: Harness, command: str, user: StandinUser = SERVER_ADMIN, /, **options: object
) -> InteractionHandle:
    return await slash(harness, f"style {command}", user, **options)


async def add_styles(harness: Harness) -> None:
    await style(
        harness, "add", name="cinematic", prompt="cinematic still of {prompt}, film grain", negative_prompt="cartoon"
    )
    await style(harness, "add", name="painterly", prompt="oil painting")


async def test_styles_are_managed_by_admins_and_listed_for_all(harness: Harness) -> None:
    await add_styles(harness)
    listed = assert_ephemeral(harness.standin, await style(harness, "list", ALICE), "**Styles** (2)")
    assert "`cinematic`: cinematic still of {prompt}" in listed and "`painterly`: oil painting" in listed
    refused = await style(harness, "add", ALICE, name="mine", prompt="x")
    assert_ephemeral(harness.standin, refused, "Only an Easel admin can change this server's styles.")
    await style(harness, "add", name="Painterly", prompt="watercolor")  # the same name, any case: replaced
    await style(harness, "remove", name="cinematic")
    assert harness.store is not None
    assert [(s.name, s.prompt) for s in harness.store.styles(GUILD_ID)] == [("Painterly", "watercolor")]


async def test_imagine_applies_several_styles_and_refuses_unknown_ones(
    harness: Harness, executor: FakeExecutor
) -> None:
    await add_styles(harness)
    await imagine(harness, ALICE, prompt="a red fox", negative_prompt="blurry", style="cinematic, painterly")
    params = executor.submitted[0].params
    assert params.prompt == "cinematic still of a red fox, film grain, oil painting"
    assert params.negative_prompt == "blurry, cartoon"
    refused = await imagine(harness, ALICE, prompt="a red fox", style="cinematc")
    assert_ephemeral(harness.standin, refused, "Unknown style `cinematc`. Closest: cinematic.")
    assert len(executor.submitted) == 1


async def test_a_pasted_styled_prompt_is_not_styled_twice(harness: Harness, executor: FakeExecutor) -> None:
    await add_styles(harness)
    await harness.standin.slash("settings channel", SERVER_ADMIN, style="painterly")
    await harness.settle()
    await imagine(harness, ALICE, prompt="a red fox")  # the channel's default style
    styled = executor.submitted[0].params
    assert styled.prompt == "a red fox, oil painting"
    # Its parameter text pasted back: the style is found in the prompt, chosen again, and applied once.
    block = create_infotext(styled, model_name=styled.model, model_hash=None)
    await imagine(harness, ALICE, prompt=block)
    assert executor.submitted[1].params.prompt == "a red fox, oil painting"
    # A style given with the paste replaces the one found in it, as choosing another in A1111 does.
    await imagine(harness, ALICE, prompt=block, style="cinematic")
    assert executor.submitted[2].params.prompt == "cinematic still of a red fox, film grain"


async def test_an_a1111_styles_csv_imports(harness: Harness) -> None:
    data = b'name,prompt,negative_prompt\ncinematic,"cinematic still of {prompt}",cartoon\nsoft,soft light,\n'
    upload = harness.standin.attachment("styles.csv", data, content_type="text/csv")
    handle = await style(harness, "import", file=upload)
    assert "Imported 2 style(s); this server has 2 now." in str(harness.standin.sent(handle)[-1].json)
    broken = harness.standin.attachment("styles.csv", b"just,some\nrow,s\n", content_type="text/csv")
    handle = await style(harness, "import", file=broken)
    assert "needs a header row" in str(harness.standin.sent(handle)[-1].json)


async def test_style_options_autocomplete_a_comma_separated_list(harness: Harness) -> None:
    await add_styles(harness)
    standin = harness.standin
    asked = await standin.autocomplete("imagine", ALICE, "style", prompt="x", style="cinematic, pa")
    body = (await standin.callback(asked)).json
    assert body["type"] == 8 and [c["value"] for c in body["data"]["choices"]] == ["cinematic, painterly"]
    asked = await standin.autocomplete("settings channel", SERVER_ADMIN, "style", style="")
    assert [c["value"] for c in (await standin.callback(asked)).json["data"]["choices"]] == ["cinematic", "painterly"]
