"""`/admin sync`: push the slash commands to Discord now (admins). Easel syncs by itself only when its commands
changed, so this is for a client that shows stale commands, or after Discord lost them."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import NotAdminError, is_admin

if TYPE_CHECKING:
    from bot.client import EaselBot

log = logging.getLogger(__name__)


class AdminCog(commands.Cog):
    admin = app_commands.Group(
        name="admin",
        description="Easel upkeep (admins)",
        guild_only=True,
        # Only hides the commands; `interaction_check` below is the real gate.
        default_permissions=discord.Permissions(administrator=True),
    )

    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        if not is_admin(interaction, self.bot.settings):
            raise NotAdminError("run upkeep commands")
        return True

    @admin.command(name="sync", description="Send Easel's slash commands to Discord again")
    async def sync(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        count = await self.bot.sync_commands(force=True)
        log.info("commands synced by user %s", interaction.user.id)
        await interaction.followup.send(
            f"Synced {count} command(s). Discord clients may take a minute to show changes.", ephemeral=True
        )


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(AdminCog(cast("EaselBot", bot)))
