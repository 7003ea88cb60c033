"""`/model list|set|refresh`: admin commands for the model folder and this server's default model."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import AdminCheck, admin_group
from bot.ports import ModelEntryView, UpscalerView
from bot.render import MAX_CONTENT
from commands.choices import matching
from engine.models.detect import FAMILY_NAMES

if TYPE_CHECKING:
    from bot.client import EaselBot

log = logging.getLogger(__name__)


def model_list_text(
    entries: Sequence[ModelEntryView],
    default: str,
    limit: int = MAX_CONTENT,
    upscalers: Sequence[UpscalerView] = (),
    detectors: Sequence[UpscalerView] = (),
    taggers: Sequence[UpscalerView] = (),
) -> str:
    """Usable models (the default marked), the upscalers (architecture and scale), the detectors, then refused files
    with the reason; cut to fit one message."""
    usable = [e for e in entries if e.refused is None]
    refused = [(e.name, str(e.refused)) for e in entries if e.refused is not None]
    refused += [(u.name, str(u.refused)) for u in [*upscalers, *detectors, *taggers] if u.refused is not None]
    lines = [f"**Models** ({len(usable)} usable)"]
    lines += [
        f"- `{e.name}` ({e.kind}, {FAMILY_NAMES.get(e.family, e.family)}){' ← default' if e.name == default else ''}"
        for e in usable
    ]
    usable_upscalers = [u for u in upscalers if u.refused is None]
    if usable_upscalers:
        lines.append(f"**Upscalers** ({len(usable_upscalers)} usable)")
        lines += [f"- `{u.name}` ({u.label})" for u in usable_upscalers]
    usable_detectors = [d for d in detectors if d.refused is None]
    if usable_detectors:
        lines.append(f"**Detectors** ({len(usable_detectors)} usable, for the detailer)")
        lines += [f"- `{d.name}` ({d.label})" for d in usable_detectors]
    usable_taggers = [t for t in taggers if t.refused is None]
    if usable_taggers:
        lines.append(f"**Taggers** ({len(usable_taggers)} usable, for /describe)")
        lines += [f"- `{t.name}` ({t.label})" for t in usable_taggers]
    if refused:
        lines.append(f"**Refused** ({len(refused)})")
        lines += [f"- `{name}`: {reason}" for name, reason in refused]
    text = ""
    for shown, line in enumerate(lines):
        more = f"\n… and {len(lines) - shown} more lines"
        if len(text) + len(line) + 1 + len(more) > limit:
            return text + more
        text += ("\n" if text else "") + line
    return text


class ModelsCog(AdminCheck, commands.Cog):
    model = admin_group("model", "Manage the models this server can use (admins)")
    action = "manage models"

    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot
        self.settings = bot.settings

    def _default(self, guild_id: int | None) -> str:
        stored = None if guild_id is None else self.bot.store.guild_default_model(guild_id)
        return stored or self.bot.registry.default_model(self.bot.settings.default_model)

    @model.command(name="list", description="List usable models, and files refused with the reason")
    async def list_models(self, interaction: discord.Interaction[EaselBot]) -> None:
        text = model_list_text(
            self.bot.registry.entries(),
            self._default(interaction.guild_id),
            upscalers=self.bot.networks.upscalers(),
            detectors=self.bot.networks.detectors(),
            taggers=self.bot.networks.taggers(),
        )
        await interaction.response.send_message(text, ephemeral=True)

    @model.command(name="set", description="Set this server's default model")
    @app_commands.describe(name="The model to use when /imagine does not name one")
    async def set_default(self, interaction: discord.Interaction[EaselBot], name: str) -> None:
        entry = self.bot.registry.resolve(name)
        guild_id = interaction.guild_id
        assert guild_id is not None  # guild_only
        self.bot.store.set_guild_default_model(guild_id, entry.name)
        log.info("guild %s: default model set to %s by user %s", guild_id, entry.name, interaction.user.id)
        await interaction.response.send_message(f"This server's default model is now `{entry.name}`.", ephemeral=True)

    @set_default.autocomplete("name")
    async def _model_choices(
        self, interaction: discord.Interaction[EaselBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return matching(self.bot.registry.names(), current)

    @model.command(name="refresh", description="Rescan the models, LoRA and embeddings folders")
    async def refresh(self, interaction: discord.Interaction[EaselBot]) -> None:
        # LoRA headers and embedding files are read on the catalog's thread; a slow disk may outlast 3 s.
        await interaction.response.defer(ephemeral=True, thinking=True)
        self.bot.registry.refresh()
        await self.bot.networks.refresh()
        entries = self.bot.registry.entries()
        refused = sum(1 for e in entries if e.refused is not None)
        loras = len(self.bot.networks.lora_names())
        refused_loras = self.bot.networks.refused_loras()
        embeddings = self.bot.networks.embeddings()
        refused_embeddings = sum(1 for e in embeddings if e.refused is not None)
        log.info(
            "rescanned by user %s: %d model entries, %d LoRA(s), %d embedding(s)",
            interaction.user.id,
            len(entries),
            loras,
            len(embeddings),
        )
        await interaction.followup.send(
            f"Rescanned: {len(entries) - refused} usable model(s), {refused} refused; {loras} LoRA(s), "
            f"{refused_loras} refused; "
            f"{len(embeddings) - refused_embeddings} embedding(s), {refused_embeddings} refused. "
            "See `/model list` and `/lora list`.",
            ephemeral=True,
        )


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(ModelsCog(cast("EaselBot", bot)))
