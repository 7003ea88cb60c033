"""Job buttons as `DynamicItem`s (`easel:<action>:<job_id>`): their state lives in the job store, so they keep
working after a restart."""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
from typing import TYPE_CHECKING, Any, ClassVar, Self

import discord

from bot.checks import is_admin
from bot.components import on_job
from bot.edit import EditModal
from bot.errors import send_ephemeral, withdraw
from bot.outpaint import ImageMenu, OutpaintButton
from bot.region import RegionButton, RegionFormButton
from bot.replay import replay
from bot.store import JobRecord, JobStatus
from bot.uploads import check_and_store, download
from engine.errors import EaselError
from engine.params import RANDOM_SEED_RANGE
from engine.plan import output_size
from engine.request import PLAIN_UPSCALERS, Request, UpscaleAsk, default_upscaler, fix_faces_detector

if TYPE_CHECKING:
    from bot.client import EaselBot

log = logging.getLogger(__name__)

JOB_ID_PATTERN = r"(?P<job_id>[0-9a-f]{6,32})"
VARIATION_STRENGTH = 0.15  # A1111's "Variation strength" for a subtle variation
UPSCALE_FACTOR = 2
UPSCALER = "Latent"
UPSCALE_DENOISING = 0.5  # A1111's usual value for a Latent hires pass: sharper detail, same composition
MODEL_UPSCALE_DENOISING = 0.4  # what model cards ask of an ESRGAN hires pass (0.3-0.45): new detail, same picture
SUBTLE_SCALE = 2.0
IMAGE_PATTERN = r"(?::(?P<index>\d{1,2}))?"
MAX_IMAGE_BUTTONS = 5  # one row of a message's buttons
_PENDING = "0" * 64  # the image's hash before it is downloaded

Button = discord.ui.Button[discord.ui.View]


class _JobButton(discord.ui.DynamicItem[Button], template=r"easel:[a-z]+:" + JOB_ID_PATTERN):
    action: ClassVar[str] = ""
    label: ClassVar[str] = ""
    emoji: ClassVar[str] = ""
    style: ClassVar[discord.ButtonStyle] = discord.ButtonStyle.secondary

    def __init__(self, job_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label=self.label,
                emoji=self.emoji,
                style=self.style,
                custom_id=f"easel:{self.action}:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: Any, /
    ) -> Self:
        return cls(match["job_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await on_job(interaction, self.job_id, lambda bot, record: self.run(interaction, bot, record))

    async def run(self, interaction: discord.Interaction[EaselBot], bot: EaselBot, record: JobRecord) -> None:
        raise NotImplementedError

    @staticmethod
    def may_manage(interaction: discord.Interaction[EaselBot], bot: EaselBot, record: JobRecord) -> bool:
        return interaction.user.id == record.user_id or is_admin(interaction, bot.settings)


def _new_seed() -> int:
    return random.SystemRandom().randrange(RANDOM_SEED_RANGE)


class RerollButton(_JobButton, template=r"easel:reroll:" + JOB_ID_PATTERN):
    """Same params, a new random seed."""

    action, label, emoji = "reroll", "Reroll", "🎲"

    async def run(self, interaction: discord.Interaction[EaselBot], bot: EaselBot, record: JobRecord) -> None:
        here = bot.ceilings_here(interaction)
        params = await replay(record.params, bot, here.limits, seed=_new_seed())
        await bot.runner.start_job(interaction, params, max_queued=here.queue_cap)


class VaryButton(_JobButton, template=r"easel:vary:" + JOB_ID_PATTERN):
    """Same seed, a new variation seed at a subtle strength (A1111's variation seed)."""

    action, label, emoji = "vary", "Vary", "🌀"

    async def run(self, interaction: discord.Interaction[EaselBot], bot: EaselBot, record: JobRecord) -> None:
        here = bot.ceilings_here(interaction)
        params = await replay(record.params, bot, here.limits, subseed=_new_seed(), subseed_strength=VARIATION_STRENGTH)
        await bot.runner.start_job(interaction, params, max_queued=here.queue_cap)


class _ImageButton(_JobButton, template=r"easel:[a-z]+:" + JOB_ID_PATTERN + IMAGE_PATTERN):
    """A button for one image of a job's result (`easel:<action>:<job_id>:<index>`; no index: the first)."""

    number_label: ClassVar[str] = ""  # the label in a batch, with the image's number

    def __init__(self, job_id: str, index: int = 0, *, numbered: bool = False) -> None:
        super().__init__(job_id)
        self.index = index
        self.item.custom_id = f"easel:{self.action}:{job_id}:{index}"
        if numbered:
            self.item.label = f"{self.number_label} {index + 1}"

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: Any, /
    ) -> Self:
        return cls(match["job_id"], int(match["index"] or 0))


class UpscaleButton(_ImageButton, template=r"easel:upscale:" + JOB_ID_PATTERN + IMAGE_PATTERN):
    """Midjourney's Upscale (Creative): the image redrawn at twice the size with hires fix (same first pass and
    seed), through the server's upscaler model where one is chosen and installed, else Latent."""

    action, label, emoji, number_label = "upscale", "Upscale (Creative)", "⏫", "Creative"

    async def run(self, interaction: discord.Interaction[EaselBot], bot: EaselBot, record: JobRecord) -> None:
        params = record.params
        if params.init_image is not None:
            await send_ephemeral(
                interaction,
                "Upscale (Creative) redraws text-to-image results; for this one, use Upscale (Subtle) or draw again "
                "at a larger size.",
            )
            return
        if self.index >= params.batch_size:
            await send_ephemeral(interaction, f"This job has no image {self.index + 1}.")
            return
        shown_w, shown_h = output_size(params)
        width, height = shown_w * UPSCALE_FACTOR, shown_h * UPSCALE_FACTOR
        here = bot.ceilings_here(interaction)
        limits = here.limits
        if width * height > limits.max_hires_pixels or max(width, height) > limits.max_hires_side:
            await send_ephemeral(
                interaction,
                f"Upscaling ×{UPSCALE_FACTOR} would make {width}×{height} ({width * height:,} pixels); this server "
                f"allows at most {limits.max_hires_pixels:,} pixels here and {limits.max_hires_side:,} per side.",
            )
            return
        notes: list[str] = []
        upscaler = default_upscaler(bot.stored_layers(interaction), bot.catalog, notes)
        model_upscaler = upscaler is not None and upscaler not in PLAIN_UPSCALERS
        one_image = {  # this image of the batch alone: its own seed (and variation seed)
            "seed": params.image_seeds()[self.index],
            "subseed": params.image_subseeds()[self.index],
            "batch_size": 1,
        }
        upscaled = await replay(
            params,
            bot,
            limits,
            **one_image,
            enable_hr=True,
            hr_scale=width / params.width,
            hr_resize_x=0,
            hr_resize_y=0,
            hr_upscaler=upscaler if model_upscaler else UPSCALER,
            denoising_strength=MODEL_UPSCALE_DENOISING if model_upscaler else UPSCALE_DENOISING,
        )
        await bot.runner.start_job(interaction, upscaled, notes, max_queued=here.queue_cap)


class SubtleButton(_ImageButton, template=r"easel:subtle:" + JOB_ID_PATTERN + IMAGE_PATTERN):
    """Midjourney's Upscale (Subtle): the picture itself through the server's upscaler model (else Lanczos), ×2,
    nothing redrawn (A1111's Extras)."""

    action, label, emoji, number_label = "subtle", "Upscale (Subtle)", "🔍", "Subtle"

    async def run(self, interaction: discord.Interaction[EaselBot], bot: EaselBot, record: JobRecord) -> None:
        here = bot.ceilings_here(interaction)
        prefix = f"easel-{record.job_id}-{self.index}-"
        found = (
            [a for a in interaction.message.attachments if a.filename.startswith(prefix)] if interaction.message else []
        )
        if not found:
            await send_ephemeral(
                interaction, f"Image {self.index + 1} is not on this message; upscale it from its own."
            )
            return
        attachment = found[0]
        limits = here.limits
        request = Request(
            init_image=_PENDING,
            init_size=(attachment.width or 8, attachment.height or 8),
            stored=bot.stored_layers(interaction),
            base=record.params,
            upscale=UpscaleAsk(None, SUBTLE_SCALE),
        )
        resolved = await bot.resolve(request, limits)  # the size and the upscaler refused before any download
        await interaction.response.defer(thinking=True)
        try:
            assert bot.downloads is not None  # opened in setup_hook
            data = await download(bot.downloads, attachment.url, what="image")
            digest, width, height = await bot.offload(
                functools.partial(check_and_store, bot.blobs, data, max_pixels=limits.max_hires_pixels)
            )
            if (width, height) != request.init_size:
                request = dataclasses.replace(request, init_size=(width, height))
            resolved = await bot.resolve(dataclasses.replace(request, init_image=digest), limits)
            await bot.runner.start_job(interaction, resolved.params, resolved.notes, max_queued=here.queue_cap)
        except EaselError as err:
            await withdraw(interaction, str(err))


class FixFacesButton(_JobButton, template=r"easel:fixfaces:" + JOB_ID_PATTERN):
    """ADetailer's face fix on the finished images of this message, alone (the detector of the channel or server,
    else the installed face detector): each face redrawn at full resolution, the rest of the picture kept."""

    action, label, emoji = "fixfaces", "Fix faces", "🙂"

    async def run(self, interaction: discord.Interaction[EaselBot], bot: EaselBot, record: JobRecord) -> None:
        params = record.params
        if params.is_extras:
            await send_ephemeral(interaction, "An upscale has no prompt to redraw faces with; fix the original.")
            return
        here = bot.ceilings_here(interaction)
        detector = fix_faces_detector(bot.stored_layers(interaction), bot.catalog)
        attachments = {a.filename: a for a in interaction.message.attachments} if interaction.message else {}
        found = []
        for index in range(params.batch_size):  # image 1, 2...: each keeps its own seed
            prefix = f"easel-{record.job_id}-{index}-"
            named = [a for name, a in attachments.items() if name.startswith(prefix)]
            if not named:
                break
            found.append(named[0])
        if not found:
            await send_ephemeral(interaction, "The images are not on this message; use Fix faces on the result itself.")
            return
        fixed = await replay(params, bot, here.limits, detailers=detector)  # the detector and limits checked first
        await interaction.response.defer(thinking=True)
        try:
            assert bot.downloads is not None  # opened in setup_hook
            digests = []
            for attachment in found:
                data = await download(bot.downloads, attachment.url, what="image")
                digest, _, _ = await bot.offload(
                    functools.partial(check_and_store, bot.blobs, data, max_pixels=here.limits.max_hires_pixels)
                )
                digests.append(digest)
            job = dataclasses.replace(fixed, detail_images=tuple(digests), batch_size=len(digests))
            await bot.runner.start_job(interaction, job, max_queued=here.queue_cap)
        except EaselError as err:
            await withdraw(interaction, str(err))


class SuggestionButton(_ImageButton, template=r"easel:suggest:" + JOB_ID_PATTERN + IMAGE_PATTERN):
    """Midjourney's `/describe` buttons: `/imagine` with suggestion N of the description, as the clicker's job (their
    settings and limits apply)."""

    action, label, emoji, number_label = "suggest", "Imagine", "🎨", "Imagine"

    async def run(self, interaction: discord.Interaction[EaselBot], bot: EaselBot, record: JobRecord) -> None:
        suggestions = bot.store.suggestions(record.job_id)
        if self.index >= len(suggestions):
            await send_ephemeral(interaction, f"This description has no suggestion {self.index + 1}.")
            return
        here = bot.ceilings_here(interaction)
        request = Request(
            prompt=suggestions[self.index],
            stored=bot.stored_layers(interaction),
            styles=[] if interaction.guild_id is None else bot.store.styles(interaction.guild_id),
        )
        resolved = await bot.resolve(request, here.limits)
        await bot.runner.start_job(interaction, resolved.params, resolved.notes, max_queued=here.queue_cap)


class EditButton(_JobButton, template=r"easel:edit:" + JOB_ID_PATTERN):
    """A modal with the job's prompt, negative prompt and parameters; submitting it queues a new job."""

    action, label, emoji = "edit", "Edit", "✏️"

    async def run(self, interaction: discord.Interaction[EaselBot], bot: EaselBot, record: JobRecord) -> None:
        await interaction.response.send_modal(EditModal(record.job_id, record.params))


class DeleteButton(_JobButton, template=r"easel:delete:" + JOB_ID_PATTERN):
    """Delete the result message: the requester or an admin only, checked here on the server side."""

    action, label, emoji = "delete", "Delete", "🗑️"
    style = discord.ButtonStyle.danger

    async def run(self, interaction: discord.Interaction[EaselBot], bot: EaselBot, record: JobRecord) -> None:
        if not self.may_manage(interaction, bot, record):
            await send_ephemeral(interaction, "Only the person who asked for this image, or an admin, can delete it.")
            return
        await interaction.response.defer()
        await interaction.delete_original_response()
        bot.store.set_status(record.job_id, JobStatus.DELETED)
        log.info("job %s: result deleted by user %s", record.job_id, interaction.user.id)


class CancelButton(_JobButton, template=r"easel:cancel:" + JOB_ID_PATTERN):
    """Cancel a queued or running job: the requester or an admin only."""

    action, label, emoji = "cancel", "Cancel", "✖️"

    async def run(self, interaction: discord.Interaction[EaselBot], bot: EaselBot, record: JobRecord) -> None:
        if not self.may_manage(interaction, bot, record):
            await send_ephemeral(interaction, "Only the person who asked for this image, or an admin, can cancel it.")
            return
        if not bot.runner.cancel(record.job_id):
            await send_ephemeral(interaction, "This job has already finished.")
            return
        # The job's own follower edits the message to "Cancelled" when the executor confirms.
        await interaction.response.defer()
        log.info("job %s: cancel requested by user %s", record.job_id, interaction.user.id)


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    RerollButton, VaryButton, UpscaleButton, SubtleButton, EditButton, DeleteButton, CancelButton, OutpaintButton,
    ImageMenu, RegionButton, RegionFormButton, FixFacesButton, SuggestionButton,
)  # fmt: skip


RESULT_BUTTONS: tuple[type[_JobButton], ...] = (RerollButton, VaryButton, EditButton, DeleteButton, FixFacesButton)
IMAGE_BUTTONS: tuple[type[_ImageButton], ...] = (SubtleButton, UpscaleButton)


def result_view(job_id: str, images: int = 1, *, upscaled: bool = False) -> discord.ui.View:
    """The result's components, within Discord's 5 rows of 5 (README: "Buttons on a result").

    One image: Reroll, Vary, Edit, Delete, Fix faces; Upscale (Subtle), (Creative), Vary (Region); Zoom Out 2×,
    1.5×, Custom Zoom, Make Square; Pan ⬅ ➡ ⬆ ⬇. A batch: the job's row (Fix faces for all its images); a row each
    of Subtle, Creative and Vary (Region) with a button per image (Midjourney's U1-U4); then a menu with Vary, Zoom
    Out 2× and Pan for each image. An upscale's result has Delete and Upscale (Subtle) only."""
    view = discord.ui.View(timeout=None)
    if upscaled:
        view.add_item(DeleteButton(job_id))
        view.add_item(SubtleButton(job_id, 0))
        return view
    for button in RESULT_BUTTONS:
        view.add_item(button(job_id))
    shown = min(images, MAX_IMAGE_BUTTONS)
    batch = images > 1
    per_image: list[discord.ui.DynamicItem[Any]] = []
    for row, kind in enumerate((SubtleButton, UpscaleButton, RegionButton), start=1):
        if batch or kind is not RegionButton:
            for index in range(shown):
                item: discord.ui.DynamicItem[Any] = kind(job_id, index, numbered=batch)
                item.item.row = row if batch else 1
                per_image.append(item)
        else:
            region = RegionButton(job_id, 0)
            region.item.row = 1
            per_image.append(region)
    for item in per_image:
        view.add_item(item)
    if batch:
        menu = ImageMenu(job_id, images)
        menu.item.row = 4
        view.add_item(menu)
        return view
    for row, kinds in ((2, ("zoom2", "zoom15", "custom", "square")), (3, ("left", "right", "up", "down"))):
        for name in kinds:
            outpaint = OutpaintButton(job_id, 0, name)
            outpaint.item.row = row
            view.add_item(outpaint)
    return view


def describe_view(job_id: str, suggestions: int) -> discord.ui.View:
    """A `/describe` result's components: Imagine 1-4 (one per suggestion), then Delete."""
    view = discord.ui.View(timeout=None)
    for index in range(suggestions):
        view.add_item(SuggestionButton(job_id, index, numbered=True))
    view.add_item(DeleteButton(job_id))
    return view


def shows_result(message: discord.Message, job_id: str) -> bool:
    """Whether `message` carries `job_id`'s result buttons (the job's reply once its result is delivered)."""
    wanted = {f"easel:{button.action}:{job_id}" for button in RESULT_BUTTONS} | {f"easel:subtle:{job_id}:0"}
    return any(
        getattr(child, "custom_id", None) in wanted
        for row in message.components
        for child in (row.children if isinstance(row, discord.ActionRow) else [row])
    )


def cancel_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id))
    return view
