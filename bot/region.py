"""Midjourney's Vary (Region) on each image of a result: the button answers (only to the clicker) with the image
under a numbered 3x3 grid and a "Choose the region" button; that opens a form with the prompt (editable: Remix), the
grid cells to redraw and an optional mask upload (white = redraw, for those with an image editor). The redraw is an
A1111 inpaint of the clicker's, with A1111's img2img-tab defaults (mask blur 4, original content, whole picture,
denoising 0.75) and the image's own seed."""

from __future__ import annotations

import functools
import io
import logging
from typing import TYPE_CHECKING, Any, Self

import discord

from bot.components import on_job
from bot.errors import handle_error, send_ephemeral, withdraw
from bot.outpaint import image_attachment
from bot.store import JobRecord
from bot.uploads import MAX_UPLOAD_BYTES, download
from engine.errors import EaselError, InvalidParamsError
from engine.images import check_upload
from engine.inpaint import CELL_NAMES, GRID, check_mask, grid_mask, grid_preview
from engine.request import Request

if TYPE_CHECKING:
    from bot.client import EaselBot

log = logging.getLogger(__name__)

REGION_DENOISING = 0.75  # A1111's img2img default
MAX_PROMPT = 4000
_JOB = r"(?P<job_id>[0-9a-f]{6,32}):(?P<index>\d{1,2})"

Button = discord.ui.Button[discord.ui.View]


class _RecordItem(discord.ui.DynamicItem[Button], template=r"easel:region[a-z]*:" + _JOB):
    """A button of one image of a job: the record looked up, errors handled as the tree's handler does."""

    action = ""

    def __init__(self, job_id: str, index: int, label: str, emoji: str | None = None, suffix: str = "") -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=emoji,
                style=discord.ButtonStyle.secondary,
                custom_id=f"easel:{self.action}:{job_id}:{index}{suffix}",
            )
        )
        self.job_id, self.index = job_id, index

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await on_job(interaction, self.job_id, lambda bot, record: self.run(interaction, bot, record.params))

    async def run(self, interaction: discord.Interaction[EaselBot], bot: EaselBot, params: Any) -> None:
        raise NotImplementedError


class RegionButton(_RecordItem, template=r"easel:region:" + _JOB):
    """Vary (Region): the image with its grid, only to the clicker, and the button that opens the form."""

    action = "region"

    def __init__(self, job_id: str, index: int = 0, *, numbered: bool = False) -> None:
        super().__init__(job_id, index, f"Vary (Region){f' {index + 1}' if numbered else ''}", "🖌️")

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: Any, /
    ) -> Self:
        return cls(match["job_id"], int(match["index"]))

    async def run(self, interaction: discord.Interaction[EaselBot], bot: EaselBot, params: Any) -> None:
        attachment = image_attachment(interaction, self.job_id, self.index)
        if attachment is None or params.is_extras:
            await send_ephemeral(interaction, f"Image {self.index + 1} is not on this message.")
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        assert bot.downloads is not None  # opened in setup_hook
        try:
            data = await download(bot.downloads, attachment.url, what="image")
            preview: bytes = await bot.offload(functools.partial(_preview, data, bot.limits.max_hires_pixels))
            digest: str = await bot.offload(bot.blobs.put, data)
        except EaselError as err:
            await interaction.followup.send(str(err), ephemeral=True)
            return
        view = discord.ui.View(timeout=None)
        view.add_item(RegionFormButton(self.job_id, self.index, digest))
        await interaction.followup.send(
            "Choose the cells to redraw (numbered on the picture), change the prompt if you like, or upload a mask.",
            file=discord.File(io.BytesIO(preview), filename="region-grid.png"),
            view=view,
            ephemeral=True,
        )


def _stored_size(bot: EaselBot, digest: str) -> tuple[int, int]:
    """The size of the image kept when the grid was shown, read from its header."""
    try:
        data = bot.blobs.get(digest)
    except (OSError, KeyError, EaselError):
        raise InvalidParamsError("The image is no longer stored here; click Vary (Region) again.") from None
    _, width, height = check_upload(data, max_bytes=MAX_UPLOAD_BYTES, max_pixels=bot.limits.max_hires_pixels)
    return width, height


def _preview(data: bytes, max_pixels: int) -> bytes:
    from PIL import Image

    check_upload(data, max_bytes=MAX_UPLOAD_BYTES, max_pixels=max_pixels)
    with Image.open(io.BytesIO(data)) as opened:
        return grid_preview(opened)


class RegionFormButton(_RecordItem, template=r"easel:regionform:" + _JOB + r":(?P<digest>[0-9a-f]{64})"):
    """Opens the form; the image (kept in the blob store when the grid was shown) travels in the custom id."""

    action = "regionform"

    def __init__(self, job_id: str, index: int, digest: str) -> None:
        super().__init__(job_id, index, "Choose the region…", "🖌️", suffix=f":{digest}")
        self.digest = digest

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: Any, /
    ) -> Self:
        return cls(match["job_id"], int(match["index"]), match["digest"])

    async def run(self, interaction: discord.Interaction[EaselBot], bot: EaselBot, params: Any) -> None:
        await interaction.response.send_modal(RegionModal(self.job_id, self.index, self.digest, params.prompt))


class RegionModal(discord.ui.Modal, title="Vary (Region)"):
    def __init__(self, job_id: str, index: int, digest: str, prompt: str) -> None:
        super().__init__(timeout=15 * 60, custom_id=f"easel:regionmodal:{job_id}:{index}")
        self.job_id, self.index, self.digest = job_id, index, digest
        self.prompt = discord.ui.TextInput[discord.ui.Modal](
            style=discord.TextStyle.paragraph, default=prompt[:MAX_PROMPT], max_length=MAX_PROMPT, required=False
        )
        self.cells = discord.ui.Select[discord.ui.Modal](
            custom_id="cells",
            options=[discord.SelectOption(label=f"{n + 1}: {name}", value=str(n)) for n, name in enumerate(CELL_NAMES)],
            min_values=0,
            max_values=GRID * GRID,
            required=False,
        )
        self.mask: discord.ui.FileUpload[discord.ui.Modal] = discord.ui.FileUpload(
            custom_id="mask", required=False, min_values=0, max_values=1
        )
        self.add_item(discord.ui.Label(text="Prompt", component=self.prompt))
        self.add_item(
            discord.ui.Label(text="Cells to redraw", description="As numbered on the picture", component=self.cells)
        )
        self.add_item(
            discord.ui.Label(
                text="Or a mask", description="PNG, white = redraw (wins over the cells)", component=self.mask
            )
        )

    async def on_submit(self, interaction: discord.Interaction[Any], /) -> None:
        await on_job(interaction, self.job_id, lambda bot, record: self._submit(interaction, bot, record))

    async def _submit(self, interaction: discord.Interaction[Any], bot: EaselBot, record: JobRecord) -> None:
        params = record.params
        uploads = list(self.mask.values)
        cells = [int(value) for value in self.cells.values]
        if not uploads and not cells:
            await send_ephemeral(interaction, "Choose at least one cell, or upload a mask.")
            return
        here = bot.ceilings_here(interaction)
        await interaction.response.defer(thinking=True)
        try:
            width, height = await bot.offload(_stored_size, bot, self.digest)
            if uploads:
                assert bot.downloads is not None  # opened in setup_hook
                data = await download(bot.downloads, uploads[0].url, what="mask")
                await bot.offload(
                    functools.partial(
                        check_mask, data, max_bytes=MAX_UPLOAD_BYTES, max_pixels=here.limits.max_hires_pixels
                    )
                )
            else:
                data = await bot.offload(grid_mask, width, height, cells)
            mask = await bot.offload(bot.blobs.put, data)
            options = {
                "init_image": self.digest, "mask": mask, "width": width // 8 * 8, "height": height // 8 * 8,
                "denoising_strength": REGION_DENOISING, "enable_hr": False, "batch_size": 1,
                "seed": params.image_seeds()[self.index], "subseed": params.image_subseeds()[self.index],
            }  # fmt: skip
            request = Request(prompt=self.prompt.value, options=options, base=params, init_image=self.digest)
            resolved = await bot.resolve(request, here.limits)
            await bot.runner.start_job(interaction, resolved.params, resolved.notes, max_queued=here.queue_cap)
        except EaselError as err:
            await withdraw(interaction, str(err))

    async def on_error(self, interaction: discord.Interaction[EaselBot], error: Exception, /) -> None:  # type: ignore[override]
        await handle_error(interaction, error)
