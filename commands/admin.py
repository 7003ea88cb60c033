"""`/admin sync`: push the slash commands to Discord now (admins). Easel syncs by itself only when its commands
changed, so this is for a client that shows stale commands, or after Discord lost them."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

import discord
from discord.ext import commands

from bot.checks import AdminCheck, admin_group

if TYPE_CHECKING:
    from bot.client import EaselBot

log = logging.getLogger(__name__)


class AdminCog(AdminCheck, commands.Cog):
    admin = admin_group("admin", "Easel upkeep (admins)")
    action = "run upkeep commands"

    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot
        self.settings = bot.settings

    @admin.command(name="sync", description="Send Easel's slash commands to Discord again")
    async def sync(self, interaction: discord.Interaction[EaselBot]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        count = await self.bot.sync_commands(force=True)
        log.info("commands synced by user %s", interaction.user.id)
        await interaction.followup.send(
            f"Synced {count} command(s). Discord clients may take a minute to show changes.", ephemeral=True
        )


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(AdminCog(cast("EaselBot", bot)))
