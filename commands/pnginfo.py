"""The "Parameters" message command (A1111's PNG Info, on any message with an image): an Easel result's
parameter text from the job store, or the A1111 / NovelAI parameters read from an attached PNG, JPEG or WebP
(refused from what Discord declares, downloaded with a cap, read from its header and metadata chunks, off the
event loop). Ephemeral, with **Run again** (the same parameters as a job of yours) and **Edit** (the Edit form).

The buttons read the parameters back from the message they sit on, so they work after a restart."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Self, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.edit import EditModal
from bot.errors import handle_error, send_ephemeral
from bot.uploads import ACCEPTED_TYPES, MAX_UPLOAD_BYTES, check_declared, download, upload_pixel_limit
from engine.images import check_upload, read_infotext
from engine.infotext import create_infotext
from engine.plan import make_plan
from engine.request import Request

if TYPE_CHECKING:
    from bot.client import EaselBot

log = logging.getLogger(__name__)

MAX_SHOWN = 4000  # an embed description holds 4,096 characters; the fence takes a few
_FENCE = "```"
_ESCAPED_FENCE = "`\u200b``"  # a fence inside the text, kept from closing the block
_JOB_BUTTON = re.compile(r"^easel:[a-z]+:(?P<job_id>[0-9a-f]{6,32})$")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def job_of(message: discord.Message, bot_id: int | None) -> str | None:
    """The job id behind an Easel result: a message of this bot that carries job buttons."""
    if bot_id is None or message.author.id != bot_id:
        return None
    for row in message.components:
        for child in row.children if isinstance(row, discord.ActionRow) else [row]:
            match = _JOB_BUTTON.match(getattr(child, "custom_id", None) or "")
            if match:
                return match["job_id"]
    return None


def image_attachment(message: discord.Message) -> discord.Attachment | None:
    for attachment in message.attachments:
        content_type = (attachment.content_type or "").split(";")[0].strip().lower()
        if content_type in ACCEPTED_TYPES or attachment.filename.lower().endswith(_IMAGE_SUFFIXES):
            return attachment
    return None


def read_parameters(data: bytes, *, max_pixels: int) -> str | None:
    """The parameter text in a downloaded image, checked from its header first (format, size, pixels)."""
    check_upload(data, max_bytes=MAX_UPLOAD_BYTES, max_pixels=max_pixels)
    text = read_infotext(data)
    return text.strip() if text and text.strip() else None


def shown_text(text: str) -> str:
    """The parameters as the reply shows them: in a code block, so they copy cleanly (backticks cannot close it)."""
    return f"{_FENCE}\n{text.replace(_FENCE, _ESCAPED_FENCE)}\n{_FENCE}"


def text_of(message: discord.Message | None) -> str | None:
    """The parameters back from a Parameters reply (what its buttons act on)."""
    if message is None or not message.embeds or not message.embeds[0].description:
        return None
    body = message.embeds[0].description
    if not (body.startswith(_FENCE + "\n") and body.endswith("\n" + _FENCE)):
        return None
    return body[len(_FENCE) + 1 : -len(_FENCE) - 1].replace(_ESCAPED_FENCE, _FENCE)


class ParametersButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=r"easel:pinfo:(?P<action>run|edit)"
):
    """Run again / Edit under a Parameters reply."""

    def __init__(self, action: str) -> None:
        label, emoji = ("Run again", "🔁") if action == "run" else ("Edit", "✏️")
        super().__init__(discord.ui.Button(label=label, emoji=emoji, custom_id=f"easel:pinfo:{action}"))
        self.action = action

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: Any, /
    ) -> Self:
        return cls(match["action"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        bot = cast("EaselBot", interaction.client)
        text = text_of(interaction.message)
        if text is None:
            await send_ephemeral(interaction, "These parameters can no longer be read from this message.")
            return
        try:
            if self.action == "run":
                await self.run_again(interaction, bot, text)
            else:
                await self.edit(interaction, bot, text)
        except Exception as err:  # the buttons' outermost boundary, as for the job buttons
            await handle_error(interaction, err)

    @staticmethod
    async def run_again(interaction: discord.Interaction[EaselBot], bot: EaselBot, text: str) -> None:
        # As /imagine with the block pasted: the same layers, checks, ceilings and queue allowance.
        here = bot.ceilings_here(interaction)
        request = Request(
            paste=text,
            stored=bot.stored_layers(interaction),
            styles=[] if interaction.guild_id is None else bot.store.styles(interaction.guild_id),
        )
        resolved = await bot.resolve(request, here.limits)
        await bot.runner.start_job(interaction, resolved.params, resolved.notes, max_queued=here.queue_cap)

    @staticmethod
    async def edit(interaction: discord.Interaction[EaselBot], bot: EaselBot, text: str) -> None:
        resolved = await bot.resolve(Request(paste=text), bot.ceilings_here(interaction).limits)
        await interaction.response.send_modal(EditModal("pasted", resolved.params))


def parameters_view() -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ParametersButton("run"))
    view.add_item(ParametersButton("edit"))
    return view


class ParametersCog(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name="Parameters", callback=self.parameters)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)
        self.bot.add_dynamic_items(ParametersButton)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)
        self.bot.remove_dynamic_items(ParametersButton)

    async def parameters(self, interaction: discord.Interaction[EaselBot], message: discord.Message) -> None:
        job_id = job_of(message, self.bot.user.id if self.bot.user else None)
        record = self.bot.store.get_job(job_id) if job_id else None
        if record is not None:
            plan = await self.bot.offload(make_plan, record.params)
            text = create_infotext(
                record.params, model_name=record.params.model, model_hash=None, extra=dict(plan.infotext_fields)
            )
            source = f"Easel job `{record.job_id}`"
        else:
            attachment = image_attachment(message)
            if attachment is None:
                await send_ephemeral(
                    interaction, "This message has no PNG, JPEG or WebP image to read parameters from."
                )
                return
            max_pixels = upload_pixel_limit(self.bot.limits.max_pixels)
            check_declared(attachment, max_pixels=max_pixels, what="image")
            await interaction.response.defer(ephemeral=True, thinking=True)
            assert self.bot.downloads is not None  # opened in setup_hook
            data = await download(self.bot.downloads, attachment.url, what="image")
            found = await self.bot.offload(read_parameters, data, max_pixels=max_pixels)
            if found is None:
                await send_ephemeral(
                    interaction,
                    f"`{attachment.filename[:80]}` carries no generation parameters (A1111, civitai or NovelAI). "
                    "Discord strips them from images it re-encodes, so ask for the original file.",
                )
                return
            text, source = found, f"`{attachment.filename[:80]}`"
        embed = discord.Embed(title="Parameters", colour=discord.Colour.blurple())
        if len(text) > MAX_SHOWN:
            embed.description = shown_text(text[:MAX_SHOWN] + "…")
            embed.set_footer(text=f"From {source}; too long to show whole, so it cannot be run from here.")
            await self._send(interaction, embed, None)
            return
        embed.description = shown_text(text)
        embed.set_footer(text=f"From {source}. Run again draws it as a job of yours; Edit changes it first.")
        await self._send(interaction, embed, parameters_view())

    @staticmethod
    async def _send(
        interaction: discord.Interaction[EaselBot], embed: discord.Embed, view: discord.ui.View | None
    ) -> None:
        if interaction.response.is_done():
            if view is None:
                await interaction.followup.send(embed=embed, ephemeral=True)
            else:
                await interaction.followup.send(embed=embed, view=view, ephemeral=True)
        elif view is None:
            await interaction.response.send_message(embed=embed, ephemeral=True)
        else:
            await interaction.response.send_message(embed=embed, view=view, ephemeral=True)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(ParametersCog(cast("EaselBot", bot)))
