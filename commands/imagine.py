"""`/imagine`: slash options (or a pasted A1111 parameter block) -> a `Request` -> the resolver -> the executor."""

from __future__ import annotations

import functools
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import withdraw
from bot.uploads import MAX_UPLOAD_BYTES, check_declared, download, store_init_image, upload_pixel_limit
from commands.choices import matching
from commands.styles import style_choices
from engine.errors import EaselError
from engine.inpaint import check_mask, transparency_mask
from engine.params import HIRES_UPSCALERS, USE_SAME_SAMPLER
from engine.request import Request
from engine.samplers import sampler_names, schedule_names

if TYPE_CHECKING:
    from bot.client import EaselBot

log = logging.getLogger(__name__)

_PENDING_HASH = "0" * 64  # stands in for the init image's hash while the options are checked before the download


def _declared_size(attachment: discord.Attachment | None) -> tuple[int, int] | None:
    """The size Discord declares for an uploaded image, if it does."""
    if attachment is None or not attachment.width or not attachment.height:
        return None
    return attachment.width, attachment.height


class ImagineCog(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    @app_commands.command(name="imagine", description="Draw images from a text prompt with Stable Diffusion")
    @app_commands.describe(
        prompt="What to draw (A1111 syntax; trailing --ar 16:9 --no text --seed --steps --cfg; or a pasted block)",
        negative_prompt="What to avoid",
        steps="Denoising steps",
        sampler="Sampler, e.g. DPM++ 2M or Euler a",
        schedule="Schedule type, e.g. Karras (Automatic = the sampler's own)",
        cfg_scale="How closely to follow the prompt (CFG scale)",
        seed="Seed, 0 to 18446744073709551615; -1 or empty for a random one",
        width="Width in pixels, a multiple of 8",
        height="Height in pixels, a multiple of 8",
        model="Model (default: this server's default model)",
        batch_size="How many images",
        parameters="A pasted A1111 / civitai parameter block; the other options override it",
        init_image="Start from this image (img2img): PNG, JPEG or WebP, up to 20 MiB",
        mask="Inpaint: with init_image, white = redraw (an init image's transparent area is redrawn without one)",
        denoising_strength="How much to change: of the init image (default 0.75), or in the hires pass (0.7)",
        hires="Hires fix: draw at the size, then upscale and refine",
        hires_scale="Hires fix: upscale by (default 2)",
        hires_steps="Hires fix: steps of the second pass (0 = same as steps)",
        hires_upscaler="Hires fix: Latent (default), Lanczos, or an upscaler model such as 4x-UltraSharp",
        hires_sampler="Hires fix: the second pass's sampler, with a schedule if you like (DPM++ 2M Karras)",
        lora="A LoRA to add (appends <lora:name:weight>; add more as tags in the prompt)",
        lora_weight="The LoRA's weight (default 1)",
        vae="VAE: Automatic (the model's), None (the checkpoint's own), or one from the VAE folder",
        style="This server's styles to apply, comma-separated (/style list shows them)",
        detailer="Fix faces or hands after drawing (ADetailer): a detector, or None",
    )
    async def imagine(
        self,
        interaction: discord.Interaction[EaselBot],
        prompt: str,
        negative_prompt: str | None = None,
        steps: int | None = None,
        sampler: str | None = None,
        schedule: str | None = None,
        cfg_scale: float | None = None,
        seed: str | None = None,
        width: int | None = None,
        height: int | None = None,
        model: str | None = None,
        batch_size: int | None = None,
        parameters: str | None = None,
        init_image: discord.Attachment | None = None,
        mask: discord.Attachment | None = None,
        denoising_strength: app_commands.Range[float, 0.0, 1.0] | None = None,
        hires: bool | None = None,
        hires_scale: app_commands.Range[float, 1.0, 4.0] | None = None,
        hires_steps: app_commands.Range[int, 0, 150] | None = None,
        hires_upscaler: str | None = None,
        hires_sampler: str | None = None,
        lora: str | None = None,
        lora_weight: app_commands.Range[float, -5.0, 5.0] | None = None,
        vae: str | None = None,
        style: str | None = None,
        detailer: str | None = None,
    ) -> None:
        bot = self.bot
        here = bot.ceilings_here(interaction)
        explicit = {
            "negative_prompt": negative_prompt, "steps": steps, "sampler": sampler, "schedule": schedule,
            "cfg_scale": cfg_scale, "seed": seed, "width": width, "height": height, "batch_size": batch_size,
            "denoising_strength": denoising_strength, "enable_hr": hires, "hr_scale": hires_scale,
            "hr_steps": hires_steps, "hr_upscaler": hires_upscaler, "hr_sampler": hires_sampler,
            "vae": vae, "mask": None if mask is None else _PENDING_HASH, "detailers": detailer,
        }  # fmt: skip
        request = Request(
            prompt=prompt,
            options=explicit,
            paste=parameters,
            model=model,
            stored=bot.stored_layers(interaction),
            lora=lora,
            lora_weight=lora_weight,
            style=style,
            styles=[] if interaction.guild_id is None else bot.store.styles(interaction.guild_id),
            init_image=None if init_image is None else _PENDING_HASH,
            init_size=_declared_size(init_image),
        )
        if init_image is not None:  # refused on what Discord declares before anything else
            check_declared(init_image, max_pixels=upload_pixel_limit(here.limits.max_pixels))
        if mask is not None:
            check_declared(mask, max_pixels=upload_pixel_limit(here.limits.max_pixels), what="mask")
        resolved = await bot.resolve(request, here.limits)
        if init_image is None:
            await bot.runner.start_job(interaction, resolved.params, resolved.notes, max_queued=here.queue_cap)
            return
        # img2img: everything that can be refused without the file was refused above, ephemerally; the download
        # may outlast Discord's 3 s, so it happens after a "thinking" defer.
        await interaction.response.defer(thinking=True)
        try:
            assert bot.downloads is not None  # opened in setup_hook
            upload_pixels = upload_pixel_limit(here.limits.max_pixels)
            digest, *size = await store_init_image(
                bot.downloads, bot.blobs, init_image, max_pixels=upload_pixels, offload=bot.offload
            )
            mask_digest = await self._mask(init_image, digest, mask, upload_pixels)
            options = {**explicit, "mask": mask_digest}
            again = replace(request, options=options, init_image=digest, init_size=(size[0], size[1]))
            params = (await bot.resolve(again, here.limits)).params
            await bot.runner.start_job(interaction, params, resolved.notes, max_queued=here.queue_cap)
        except EaselError as err:
            await withdraw(interaction, str(err))

    async def _mask(
        self, init_image: discord.Attachment, digest: str, mask: discord.Attachment | None, max_pixels: int
    ) -> str | None:
        """The mask's blob: the `mask` upload (its header checked, then that it paints something), else the init
        image's transparent area, else none (plain img2img)."""
        bot = self.bot
        if mask is None:
            found = await bot.offload(transparency_mask, bot.blobs.get(digest))
            return None if found is None else await bot.offload(bot.blobs.put, found)
        assert bot.downloads is not None
        data = await download(bot.downloads, mask.url, what="mask")
        await bot.offload(functools.partial(check_mask, data, max_bytes=MAX_UPLOAD_BYTES, max_pixels=max_pixels))
        digest_of_mask: str = await bot.offload(bot.blobs.put, data)
        return digest_of_mask

    @imagine.autocomplete("sampler")
    async def _sampler_choices(
        self, interaction: discord.Interaction[EaselBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return matching(sampler_names(), current)

    @imagine.autocomplete("schedule")
    async def _schedule_choices(
        self, interaction: discord.Interaction[EaselBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return matching(schedule_names(), current)

    @imagine.autocomplete("hires_upscaler")
    async def _hires_upscaler_choices(
        self, interaction: discord.Interaction[EaselBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return matching([*HIRES_UPSCALERS, *self.bot.networks.upscaler_names()], current)

    @imagine.autocomplete("hires_sampler")
    async def _hires_sampler_choices(
        self, interaction: discord.Interaction[EaselBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return matching([USE_SAME_SAMPLER, *sampler_names()], current)

    @imagine.autocomplete("detailer")
    async def _detailer_choices(
        self, interaction: discord.Interaction[EaselBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return matching(["None", *self.bot.networks.detector_names()], current)

    @imagine.autocomplete("model")
    async def _model_choices(
        self, interaction: discord.Interaction[EaselBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return matching(self.bot.registry.names(), current)

    @imagine.autocomplete("vae")
    async def _vae_choices(
        self, interaction: discord.Interaction[EaselBot], current: str
    ) -> list[app_commands.Choice[str]]:
        model = interaction.namespace.model or self.bot.registry.default_model(self.bot.settings.default_model)
        try:
            family = self.bot.registry.traits(str(model)).family
        except EaselError:
            family = None
        return matching(["Automatic", "None", *self.bot.networks.vae_names(family)], current)

    @imagine.autocomplete("style")
    async def _style_choices(
        self, interaction: discord.Interaction[EaselBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return style_choices(self.bot.store, interaction.guild_id, current)

    @imagine.autocomplete("lora")
    async def _lora_choices(
        self, interaction: discord.Interaction[EaselBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return matching(self.bot.networks.lora_names(), current)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(ImagineCog(cast("EaselBot", bot)))
