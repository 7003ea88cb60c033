"""`/style list|add|remove|import`: a server's prompt styles, as A1111 has them. Anyone may list them; admins
(checked when the command runs) add, replace, remove and import them from A1111's `styles.csv`. `/imagine style:`
applies them (engine/styles.py has the rules)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import admin_guild
from bot.errors import send_ephemeral
from bot.store import JobStore
from bot.uploads import download
from commands.choices import matching, matching_list
from engine.errors import InvalidParamsError
from engine.styles import MAX_CSV_BYTES, MAX_STYLES, Style, checked_style, read_styles_csv, resolve_styles

if TYPE_CHECKING:
    from bot.client import EaselBot

log = logging.getLogger(__name__)

MAX_LISTED = 1900  # characters of a /style list reply


def style_choices(store: JobStore, guild_id: int | None, current: str) -> list[app_commands.Choice[str]]:
    """Autocomplete for a comma-separated list of this server's styles (none in a DM)."""
    if guild_id is None:
        return []
    return matching_list([style.name for style in store.styles(guild_id)], current)


def styles_text(styles: list[Style]) -> str:
    if not styles:
        return "This server has no styles yet. Admins add them with `/style add` or `/style import`."
    lines = [f"**Styles** ({len(styles)}): `/imagine style:` applies one or more, comma-separated"]
    for style in styles:
        line = f"- `{style.name}`: {style.prompt[:80] or '(negative only)'}"
        if sum(len(x) + 1 for x in lines) + len(line) > MAX_LISTED:
            lines.append(f"…and {len(styles) - len(lines) + 1} more")
            break
        lines.append(line)
    return "\n".join(lines)


def with_style(styles: list[Style], style: Style) -> list[Style]:
    """The styles with `style` added, or replacing the one of the same name (any case) in its place."""
    for index, existing in enumerate(styles):
        if existing.name.lower() == style.name.lower():
            return [*styles[:index], style, *styles[index + 1 :]]
    if len(styles) >= MAX_STYLES:
        raise InvalidParamsError(f"This server has {MAX_STYLES} styles, the most it keeps; remove one first.")
    return [*styles, style]


class StyleCog(commands.Cog):
    style = app_commands.Group(name="style", description="This server's prompt styles, as in A1111", guild_only=True)

    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    def _check_admin(self, interaction: discord.Interaction[EaselBot]) -> int:
        return admin_guild(interaction, self.bot.settings, "change this server's styles")

    @style.command(name="list", description="The styles /imagine style: can apply here")
    async def list_styles(self, interaction: discord.Interaction[EaselBot]) -> None:
        assert interaction.guild_id is not None
        await send_ephemeral(interaction, styles_text(self.bot.store.styles(interaction.guild_id)))

    @style.command(name="add", description="Admins: add a style, or replace the one of that name")
    @app_commands.describe(
        name="The style's name (no commas)",
        prompt="Its prompt: {prompt} stands for the request's prompt; without it, it is appended",
        negative_prompt="Its negative prompt (the same rule)",
    )
    async def add(
        self, interaction: discord.Interaction[EaselBot], name: str, prompt: str = "", negative_prompt: str = ""
    ) -> None:
        guild_id = self._check_admin(interaction)
        style = checked_style(name, prompt, negative_prompt)
        self.bot.store.set_styles(guild_id, with_style(self.bot.store.styles(guild_id), style))
        log.info("admin %s saved style %r in guild %s", interaction.user.id, style.name, guild_id)
        await send_ephemeral(interaction, f"Saved style `{style.name}`.")

    @style.command(name="remove", description="Admins: remove a style")
    @app_commands.describe(name="The style to remove")
    async def remove(self, interaction: discord.Interaction[EaselBot], name: str) -> None:
        guild_id = self._check_admin(interaction)
        styles = self.bot.store.styles(guild_id)
        chosen = resolve_styles(name, styles)
        if not chosen:
            await send_ephemeral(interaction, "Give the name of a style to remove.")
            return
        style = chosen[0]
        self.bot.store.set_styles(guild_id, [s for s in styles if s is not style])
        await send_ephemeral(interaction, f"Removed style `{style.name}`.")

    @style.command(name="import", description="Admins: add the styles of an A1111 styles.csv (same names are replaced)")
    @app_commands.describe(file="A1111's styles.csv: name,prompt,negative_prompt")
    async def import_styles(self, interaction: discord.Interaction[EaselBot], file: discord.Attachment) -> None:
        guild_id = self._check_admin(interaction)
        if file.size > MAX_CSV_BYTES:
            raise InvalidParamsError(
                f"`{file.filename[:60]}` is {file.size:,} bytes; a styles file may have {MAX_CSV_BYTES:,}."
            )
        await interaction.response.defer(ephemeral=True, thinking=True)
        assert self.bot.downloads is not None  # opened in setup_hook
        data = await download(self.bot.downloads, file.url, max_bytes=MAX_CSV_BYTES, what="styles file")
        imported = await self.bot.offload(read_styles_csv, data)
        styles = self.bot.store.styles(guild_id)
        for style in imported:
            styles = with_style(styles, style)
        self.bot.store.set_styles(guild_id, styles)
        log.info("admin %s imported %d styles in guild %s", interaction.user.id, len(imported), guild_id)
        await send_ephemeral(interaction, f"Imported {len(imported)} style(s); this server has {len(styles)} now.")

    @remove.autocomplete("name")
    async def _style_choices(
        self, interaction: discord.Interaction[EaselBot], current: str
    ) -> list[app_commands.Choice[str]]:
        if interaction.guild_id is None:
            return []
        return matching([s.name for s in self.bot.store.styles(interaction.guild_id)], current)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(StyleCog(cast("EaselBot", bot)))
