"""`/settings set|show|reset`: a user's own defaults for /imagine (sampler, schedule, steps, CFG, size, negative
prompt). Layered: the request > these > the server's default model > the model's defaults; admin limits always
win (defaults are checked when set, and again when used)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import discord
from discord import app_commands
from discord.ext import commands

from commands.choices import matching
from commands.defaults import checked_defaults
from engine.samplers import sampler_names, schedule_names

if TYPE_CHECKING:
    from bot.client import EaselBot

log = logging.getLogger(__name__)

# Stored key -> how /settings show names it, in the order shown.
SETTING_LABELS = {
    "sampler": "Sampler",
    "schedule": "Schedule type",
    "steps": "Steps",
    "cfg_scale": "CFG scale",
    "width": "Width",
    "height": "Height",
    "negative_prompt": "Negative prompt",
}


def defaults_text(defaults: Mapping[str, Any]) -> str:
    if not defaults:
        return "You have no defaults of your own: /imagine uses this server's and the model's."
    lines = ["**Your /imagine defaults** (options you give in a request still win)"]
    lines += [f"- {label}: `{defaults[key]}`" for key, label in SETTING_LABELS.items() if key in defaults]
    return "\n".join(lines)


class SettingsCog(commands.Cog):
    settings = app_commands.Group(name="settings", description="Your own defaults for /imagine")

    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    def _model(self, guild_id: int | None) -> str:
        stored = None if guild_id is None else self.bot.store.guild_default_model(guild_id)
        return stored or self.bot.registry.default_model(self.bot.settings.default_model)

    @settings.command(name="set", description="Set your defaults for /imagine (only the options you give change)")
    @app_commands.describe(
        sampler="Sampler, e.g. DPM++ 2M or Euler a",
        schedule="Schedule type, e.g. Karras",
        steps="Denoising steps",
        cfg_scale="CFG scale",
        width="Width in pixels, a multiple of 8",
        height="Height in pixels, a multiple of 8",
        negative_prompt="Negative prompt used when a request gives none",
    )
    async def set_defaults(
        self,
        interaction: discord.Interaction,
        sampler: str | None = None,
        schedule: str | None = None,
        steps: int | None = None,
        cfg_scale: float | None = None,
        width: int | None = None,
        height: int | None = None,
        negative_prompt: str | None = None,
    ) -> None:
        given = {
            "sampler": sampler,
            "schedule": schedule,
            "steps": steps,
            "cfg_scale": cfg_scale,
            "width": width,
            "height": height,
            "negative_prompt": negative_prompt,
        }
        changes = {key: value for key, value in given.items() if value is not None}
        if not changes:
            await interaction.response.send_message("Nothing to set: give at least one option.", ephemeral=True)
            return
        model = self._model(interaction.guild_id)
        merged = checked_defaults(
            self.bot.store.user_defaults(interaction.user.id) | changes,
            model=model,
            limits=self.bot.limits,
            model_defaults=self.bot.registry.defaults_for(model),
        )
        self.bot.store.set_user_defaults(interaction.user.id, merged)
        log.info("user %s set defaults: %s", interaction.user.id, ", ".join(sorted(changes)))
        await interaction.response.send_message(defaults_text(merged), ephemeral=True)

    @settings.command(name="show", description="Show your defaults for /imagine")
    async def show(self, interaction: discord.Interaction) -> None:
        defaults = self.bot.store.user_defaults(interaction.user.id)
        await interaction.response.send_message(defaults_text(defaults), ephemeral=True)

    @settings.command(name="reset", description="Forget your defaults for /imagine")
    async def reset(self, interaction: discord.Interaction) -> None:
        self.bot.store.set_user_defaults(interaction.user.id, {})
        await interaction.response.send_message(
            "Your defaults are gone: /imagine uses this server's and the model's.", ephemeral=True
        )

    @set_defaults.autocomplete("sampler")
    async def _sampler_choices(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return matching(sampler_names(), current)

    @set_defaults.autocomplete("schedule")
    async def _schedule_choices(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return matching(schedule_names(), current)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(SettingsCog(cast("EaselBot", bot)))
