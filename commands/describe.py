"""`/describe image:` and the **Describe** message command: an image's tags as prompts (a WD14 tagger), queued as a
job like any other, answered with four suggestions to imagine (bot/buttons.py `SuggestionButton`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import send_ephemeral, withdraw
from bot.uploads import check_declared, store_init_image, upload_pixel_limit
from commands.choices import matching
from commands.pnginfo import image_attachment
from engine.errors import EaselError
from engine.request import DescribeAsk, Request

if TYPE_CHECKING:
    from bot.client import EaselBot

log = logging.getLogger(__name__)

_PENDING_HASH = "0" * 64  # stands in for the image's hash while the request is checked before the download


class DescribeCog(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name="Describe", callback=self.describe_message)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    @app_commands.command(name="describe", description="Prompts from an image: its tags, in the words models know")
    @app_commands.describe(
        image="The image to describe: PNG, JPEG or WebP, up to 20 MiB",
        tagger="The tagger (default: the first installed)",
        threshold="Tags above this confidence, 0 to 1 (default: the tagger's own)",
    )
    async def describe(
        self,
        interaction: discord.Interaction[EaselBot],
        image: discord.Attachment,
        tagger: str | None = None,
        threshold: app_commands.Range[float, 0.0, 0.99] | None = None,
    ) -> None:
        await self._describe(interaction, image, tagger, threshold)

    async def describe_message(self, interaction: discord.Interaction[EaselBot], message: discord.Message) -> None:
        image = image_attachment(message)
        if image is None:
            await send_ephemeral(interaction, "That message has no PNG, JPEG or WebP image to describe.")
            return
        await self._describe(interaction, image, None, None)

    async def _describe(
        self,
        interaction: discord.Interaction[EaselBot],
        image: discord.Attachment,
        tagger: str | None,
        threshold: float | None,
    ) -> None:
        """Refuse what can be refused before the download (the tagger, the declared size), then download, check
        the file's header, and queue the job."""
        bot = self.bot
        here = bot.ceilings_here(interaction)
        pixels = upload_pixel_limit(here.limits.max_pixels)
        size = (image.width or 8, image.height or 8)
        request = Request(init_image=_PENDING_HASH, init_size=size, describe=DescribeAsk(tagger, threshold))
        check_declared(image, max_pixels=pixels)
        await bot.resolve(request, here.limits)
        await interaction.response.defer(thinking=True)
        try:
            assert bot.downloads is not None  # opened in setup_hook
            digest, width, height = await store_init_image(
                bot.downloads, bot.blobs, image, max_pixels=pixels, offload=bot.offload
            )
            request = Request(init_image=digest, init_size=(width, height), describe=request.describe)
            resolved = await bot.resolve(request, here.limits)
            await bot.runner.start_job(interaction, resolved.params, resolved.notes, max_queued=here.queue_cap)
        except EaselError as err:
            await withdraw(interaction, str(err))

    @describe.autocomplete("tagger")
    async def _tagger_choices(
        self, interaction: discord.Interaction[EaselBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return matching(self.bot.networks.tagger_names(), current)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(DescribeCog(cast("EaselBot", bot)))
