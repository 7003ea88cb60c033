"""/help and /about through discord.py against the stand-in."""

from __future__ import annotations

from tests.bot.harness import ALICE, SERVER_ADMIN, Harness
from tests.bot.helpers import assert_ephemeral, callback_of
from tests.bot.standin import EPHEMERAL, InteractionHandle


async def run(harness: Harness, command: str, **options: object) -> InteractionHandle:
    handle = await harness.standin.slash(command, ALICE, **options)
    await harness.settle(handle)
    return handle


def embed_fields(harness: Harness, handle: InteractionHandle) -> dict[str, str]:
    data = callback_of(harness.standin, handle)["data"]
    assert isinstance(data, dict) and data["flags"] & EPHEMERAL
    [embed] = data["embeds"]
    return {field["name"]: field["value"] for field in embed["fields"]}


async def test_help_explains_commands_syntax_and_the_limits_here(harness: Harness) -> None:
    await harness.standin.slash("settings channel", SERVER_ADMIN, max_steps=30)
    await harness.settle()
    fields = embed_fields(harness, await run(harness, "help"))
    assert list(fields) == ["Commands", "Prompt syntax (as in AUTOMATIC1111)", "Limits here"]
    assert "/imagine prompt:" in fields["Commands"] and "/settings set|show|reset" in fields["Commands"]
    syntax = fields["Prompt syntax (as in AUTOMATIC1111)"]
    for example in ("(word:1.4)", "[cat:dog:0.4]", "BREAK", "<lora:name:0.8>", "--ar 16:9"):
        assert example in syntax
    assert "Max steps: **30** (this channel)" in fields["Limits here"]
    assert "Max batch size: **4** (the bot's config)" in fields["Limits here"]
    only = embed_fields(harness, await run(harness, "help", topic="prompts"))
    assert list(only) == ["Prompt syntax (as in AUTOMATIC1111)"]


async def test_about_shows_version_models_and_the_source_link(harness: Harness) -> None:
    text = assert_ephemeral(harness.standin, await run(harness, "about"), "**Easel ", "default `builtin:tiny`")
    assert "`builtin:tiny`" in text and "EASEL_SOURCE_URL" in text  # no link set: it says so
    harness.settings = harness.settings.model_copy(update={"source_url": "https://example.org/easel.git"})
    await harness.restart()
    assert_ephemeral(
        harness.standin, await run(harness, "about"), "Source code (AGPL-3.0): https://example.org/easel.git"
    )


async def test_every_command_and_option_has_a_short_description(harness: Harness) -> None:
    def walk(options: list[dict[str, object]]) -> list[str]:
        found = []
        for option in options:
            found.append(str(option["description"]))
            found += walk(option.get("options", []))  # type: ignore[arg-type]
        return found

    descriptions = []
    for command in harness.standin.commands.values():
        if command.get("type", 1) == 1:
            descriptions.append(str(command["description"]))
            descriptions += walk(command.get("options", []))
    assert descriptions and all(0 < len(text) <= 100 for text in descriptions)
    assert {"help", "about"} <= set(harness.standin.commands)


def test_the_command_list_fits_one_embed_field_whole() -> None:
    from commands.help import COMMANDS_TEXT, MAX_FIELD

    assert len(COMMANDS_TEXT) <= MAX_FIELD  # Discord would cut the admins' line off
    assert "/describe" in COMMANDS_TEXT and "Fix faces" in COMMANDS_TEXT
