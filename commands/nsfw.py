"""`/nsfw show|set|words`: a server's NSFW policy (bot/nsfw.py has the rules). Anyone may see it; admins
(checked when the command runs) choose what happens outside age-restricted channels and edit the word list."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import admin_guild
from bot.errors import send_ephemeral
from bot.nsfw import DEFAULT_WORDS, OUTSIDE_CHOICES, Outside, Policy, checked_words

if TYPE_CHECKING:
    from bot.client import EaselBot

log = logging.getLogger(__name__)

_OUTSIDE_TEXT = {
    "refuse": "refused, with a message saying where it can be drawn",
    "spoiler": "drawn and posted behind a spoiler",
    "allow": "drawn like any other",
}


def policy_text(policy: Policy) -> str:
    words = ", ".join(f"`{w}`" for w in policy.words) or "(none: nothing is flagged)"
    if len(words) > 1500:
        words = words[:1500] + "…"
    inside = "drawn" if policy.in_age_restricted else "treated as elsewhere"
    return "\n".join(
        [
            "**NSFW policy here**",
            f"- In age-restricted channels, a prompt with a listed word is {inside}.",
            f"- Elsewhere it is {_OUTSIDE_TEXT[policy.outside]}.",
            f"- Listed words ({len(policy.words)}), matched as whole words in the prompt (never the negative): {words}",
            "- /describe: an image its tagger rates questionable or explicit is "
            + ("treated as a flagged prompt." if policy.rating else "shown like any other (`/nsfw set rating:`)."),
            "Easel runs no safety-checker model: the list is the whole policy.",
        ]
    )


def split_words(text: str | None) -> list[str]:
    return [part for part in (text or "").split(",") if part.strip()]


class NsfwCog(commands.Cog):
    nsfw = app_commands.Group(name="nsfw", description="What this server draws where (NSFW)", guild_only=True)

    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    def _admin_guild(self, interaction: discord.Interaction[EaselBot]) -> int:
        return admin_guild(interaction, self.bot.settings, "change this server's NSFW policy")

    def _save(self, guild_id: int, policy: Policy) -> None:
        self.bot.store.set_nsfw_policy(guild_id, policy.stored())

    @nsfw.command(name="show", description="This server's NSFW policy and word list")
    async def show(self, interaction: discord.Interaction[EaselBot]) -> None:
        await send_ephemeral(interaction, policy_text(self.bot.nsfw_policy(interaction.guild_id)))

    @nsfw.command(name="set", description="Admins: what happens to flagged prompts, by channel kind")
    @app_commands.describe(
        outside="Outside age-restricted channels: refuse, spoiler (post behind a spoiler) or allow",
        age_restricted="In age-restricted channels: draw flagged prompts (true) or treat them as elsewhere",
        rating="/describe: treat an image the tagger rates questionable or explicit as flagged (default false)",
    )
    @app_commands.choices(outside=[app_commands.Choice(name=choice, value=choice) for choice in OUTSIDE_CHOICES])
    async def set_policy(
        self,
        interaction: discord.Interaction[EaselBot],
        outside: str | None = None,
        age_restricted: bool | None = None,
        rating: bool | None = None,
    ) -> None:
        guild_id = self._admin_guild(interaction)
        policy = self.bot.nsfw_policy(guild_id)
        if outside is not None:
            policy = replace(policy, outside=cast("Outside", outside))
        if age_restricted is not None:
            policy = replace(policy, in_age_restricted=age_restricted)
        if rating is not None:
            policy = replace(policy, rating=rating)
        self._save(guild_id, policy)
        log.info("admin %s set the NSFW policy of guild %s", interaction.user.id, guild_id)
        await send_ephemeral(interaction, policy_text(policy))

    @nsfw.command(name="words", description="Admins: add or remove listed words, or go back to Easel's list")
    @app_commands.describe(
        add="Words or phrases to add, comma-separated",
        remove="Words or phrases to remove, comma-separated",
        reset="Start again from Easel's default list",
    )
    async def words(
        self,
        interaction: discord.Interaction[EaselBot],
        add: str | None = None,
        remove: str | None = None,
        reset: bool = False,
    ) -> None:
        guild_id = self._admin_guild(interaction)
        policy = self.bot.nsfw_policy(guild_id)
        current = list(DEFAULT_WORDS if reset else policy.words)
        dropped = set(checked_words(split_words(remove)))
        listed = checked_words([w for w in current if w not in dropped] + split_words(add))
        policy = replace(policy, words=listed)
        self._save(guild_id, policy)
        log.info("admin %s edited the NSFW words of guild %s (%d now)", interaction.user.id, guild_id, len(listed))
        await send_ephemeral(interaction, policy_text(policy))


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(NsfwCog(cast("EaselBot", bot)))
