"""`/upscale`: an attached image made larger without redrawing it, as A1111's Extras tab does (an upscaler model,
or Lanczos / Nearest), queued as a job like any other. Results of Easel are upscaled with their Upscale buttons."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import withdraw
from bot.uploads import check_declared, store_init_image
from commands.choices import matching
from engine.errors import EaselError
from engine.request import PLAIN_UPSCALERS, Request, UpscaleAsk

if TYPE_CHECKING:
    from bot.client import EaselBot

_PENDING_HASH = "0" * 64  # the image's hash before it is downloaded


class UpscaleCog(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    @app_commands.command(name="upscale", description="Make an image larger without redrawing it (A1111's Extras)")
    @app_commands.describe(
        image="The image: PNG, JPEG or WebP",
        upscaler="An upscaler model (e.g. 4x-UltraSharp), Lanczos or Nearest (default: this server's, else Lanczos)",
        scale="Upscale by, 1 to 8 (default 4, as A1111's Extras)",
        width="Scale to this width (with height); the image keeps its aspect and covers the size",
        height="Scale to this height (with width)",
    )
    async def upscale(
        self,
        interaction: discord.Interaction[EaselBot],
        image: discord.Attachment,
        upscaler: str | None = None,
        scale: app_commands.Range[float, 1.0, 8.0] | None = None,
        width: app_commands.Range[int, 8, 16384] | None = None,
        height: app_commands.Range[int, 8, 16384] | None = None,
    ) -> None:
        bot = self.bot
        here = bot.ceilings_here(interaction)
        limits = here.limits
        # The source may have as many pixels as an upscaled result may: refused on what Discord declares first.
        check_declared(image, max_pixels=limits.max_hires_pixels, what="image")
        size = (width, height) if width is not None or height is not None else None
        request = Request(
            init_image=_PENDING_HASH,
            init_size=(image.width, image.height) if image.width and image.height else None,
            stored=bot.stored_layers(interaction),
            upscale=UpscaleAsk(upscaler, scale, size),
        )
        if request.init_size is not None:  # the upscaler and the result's size refused before any download
            await bot.resolve(request, limits)
        await interaction.response.defer(thinking=True)
        try:
            assert bot.downloads is not None  # opened in setup_hook
            digest, *real = await store_init_image(
                bot.downloads, bot.blobs, image, max_pixels=limits.max_hires_pixels, offload=bot.offload
            )
            again = dataclasses.replace(request, init_image=digest, init_size=(real[0], real[1]))
            resolved = await bot.resolve(again, limits)
            await bot.runner.start_job(interaction, resolved.params, resolved.notes, max_queued=here.queue_cap)
        except EaselError as err:
            await withdraw(interaction, str(err))

    @upscale.autocomplete("upscaler")
    async def _upscaler_choices(
        self, interaction: discord.Interaction[EaselBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return matching([*self.bot.networks.upscaler_names(), *PLAIN_UPSCALERS[:2]], current)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(UpscaleCog(cast("EaselBot", bot)))
