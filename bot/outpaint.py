"""Midjourney's Zoom Out (2×, 1.5×), Make Square and Pan (⬅ ➡ ⬆ ⬇) on each image of a result: the image from the
message's own attachment, a canvas and mask computed by `engine.outpaint`, and an inpainting job of the clicker's
through the one resolver (same seed as the image, its other parameters kept)."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any, Self, cast

import discord

from bot.components import on_job
from bot.errors import handle_error, send_ephemeral, withdraw
from bot.store import JobRecord
from bot.uploads import MAX_UPLOAD_BYTES, download
from engine.errors import EaselError
from engine.images import check_upload
from engine.outpaint import OUTPAINT_BLUR, OUTPAINT_CONTENT, OUTPAINT_DENOISING, Outpaint, outpaint
from engine.request import Request

if TYPE_CHECKING:
    from bot.client import EaselBot

log = logging.getLogger(__name__)

# kind -> (button label, emoji); the custom id is `easel:out<kind>:<job_id>:<index>`.
KINDS = {
    "zoom2": ("Zoom Out 2×", "🔭"),
    "zoom15": ("Zoom Out 1.5×", "🔭"),
    "square": ("Make Square", "⏹️"),
    "custom": ("Custom Zoom", "🔭"),
    "left": ("", "⬅️"),
    "right": ("", "➡️"),
    "up": ("", "⬆️"),
    "down": ("", "⬇️"),
}
PANS = ("left", "right", "up", "down")
_PATTERN = (
    r"easel:out(?P<kind>zoom2|zoom15|square|custom|left|right|up|down):(?P<job_id>[0-9a-f]{6,32}):(?P<index>\d{1,2})"
)

Button = discord.ui.Button[discord.ui.View]


def image_attachment(interaction: discord.Interaction[Any], job_id: str, index: int) -> discord.Attachment | None:
    """The result image `index` of `job_id` on the message the component is on."""
    prefix = f"easel-{job_id}-{index}-"
    message = interaction.message
    return next((a for a in message.attachments if a.filename.startswith(prefix)), None) if message else None


def _canvas(
    data: bytes, kind: str, max_pixels: int, zoom: float | None = None, aspect: tuple[float, float] | None = None
) -> Outpaint:
    """Checked from the header, then decoded: the canvas and mask for `kind` (on an edge thread)."""
    import io

    from PIL import Image

    check_upload(data, max_bytes=MAX_UPLOAD_BYTES, max_pixels=max_pixels * 4)
    with Image.open(io.BytesIO(data)) as opened:
        picture = opened.convert("RGB")
    factor = zoom if zoom is not None else {"zoom2": 2.0, "zoom15": 1.5}.get(kind, 1.0)
    return outpaint(
        picture,
        max_pixels=max_pixels,
        zoom=factor,
        pan=kind if kind in PANS else None,
        square=kind == "square",
        aspect=aspect,
    )


async def outpaint_job(
    interaction: discord.Interaction[EaselBot],
    bot: EaselBot,
    record: JobRecord,
    index: int,
    kind: str,
    *,
    zoom: float | None = None,
    aspect: tuple[float, float] | None = None,
    prompt: str | None = None,
) -> None:
    """Queue the outpainting of image `index` for the clicker: refused before any download where it can be.
    Custom Zoom gives its own factor, aspect ratio and prompt."""
    params = record.params
    if params.is_extras or index >= params.batch_size:
        await send_ephemeral(interaction, "This image cannot be extended from here.")
        return
    attachment = image_attachment(interaction, record.job_id, index)
    if attachment is None:
        await send_ephemeral(interaction, f"Image {index + 1} is not on this message; use the buttons on its own.")
        return
    here = bot.ceilings_here(interaction)
    await interaction.response.defer(thinking=True)
    try:
        assert bot.downloads is not None  # opened in setup_hook
        data = await download(bot.downloads, attachment.url, what="image")
        made: Outpaint = await bot.offload(
            functools.partial(_canvas, data, kind, here.limits.max_pixels, zoom=zoom, aspect=aspect)
        )
        canvas, mask = await bot.offload(bot.blobs.put, made.canvas), await bot.offload(bot.blobs.put, made.mask)
        options = {
            "init_image": canvas, "mask": mask, "width": made.width, "height": made.height,
            "denoising_strength": OUTPAINT_DENOISING, "inpainting_fill": OUTPAINT_CONTENT, "mask_blur": OUTPAINT_BLUR,
            "inpaint_full_res": False, "enable_hr": False, "batch_size": 1,
            "seed": params.image_seeds()[index], "subseed": params.image_subseeds()[index],
        }  # fmt: skip
        request = Request(prompt=prompt or "", options=options, base=params, init_image=canvas)
        resolved = await bot.resolve(request, here.limits)
        await bot.runner.start_job(interaction, resolved.params, resolved.notes, max_queued=here.queue_cap)
    except EaselError as err:
        await withdraw(interaction, str(err))


class OutpaintButton(discord.ui.DynamicItem[Button], template=_PATTERN):
    """Zoom Out, Make Square or Pan for one image of a result."""

    def __init__(self, job_id: str, index: int, kind: str, *, numbered: bool = False) -> None:
        label, emoji = KINDS[kind]
        if numbered:
            label = f"{label or emoji} {index + 1}".strip()
        super().__init__(
            discord.ui.Button(
                label=label or None,
                emoji=emoji,
                style=discord.ButtonStyle.secondary,
                custom_id=f"easel:out{kind}:{job_id}:{index}",
            )
        )
        self.job_id, self.index, self.kind = job_id, index, kind

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: Any, /
    ) -> Self:
        return cls(match["job_id"], int(match["index"]), match["kind"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        async def act(bot: EaselBot, record: JobRecord) -> None:
            if self.kind == "custom":
                await interaction.response.send_modal(CustomZoomModal(self.job_id, self.index, record.params.prompt))
                return
            await outpaint_job(interaction, bot, record, self.index, self.kind)

        await on_job(interaction, self.job_id, act)


class CustomZoomModal(discord.ui.Modal, title="Custom Zoom"):
    """Midjourney's Custom Zoom: a factor from 1 to 2, optionally a new aspect ratio, and the prompt (Remix)."""

    def __init__(self, job_id: str, index: int, prompt: str) -> None:
        super().__init__(timeout=15 * 60, custom_id=f"easel:customzoom:{job_id}:{index}")
        self.job_id, self.index = job_id, index
        self.factor = discord.ui.TextInput[discord.ui.Modal](custom_id="factor", default="1.5", max_length=6)
        self.aspect = discord.ui.TextInput[discord.ui.Modal](
            custom_id="aspect", required=False, max_length=9, placeholder="e.g. 2:1"
        )
        self.prompt = discord.ui.TextInput[discord.ui.Modal](
            custom_id="prompt", style=discord.TextStyle.paragraph, default=prompt[:4000], max_length=4000,
            required=False,
        )  # fmt: skip
        self.add_item(discord.ui.Label(text="Zoom out by", description="From 1 to 2", component=self.factor))
        self.add_item(
            discord.ui.Label(text="Aspect ratio", description="Leave empty to keep the image's", component=self.aspect)
        )
        self.add_item(discord.ui.Label(text="Prompt", component=self.prompt))

    async def on_submit(self, interaction: discord.Interaction[Any], /) -> None:
        await on_job(interaction, self.job_id, lambda bot, record: self._submit(interaction, bot, record))

    async def _submit(self, interaction: discord.Interaction[Any], bot: EaselBot, record: JobRecord) -> None:
        from engine.prompts.flags import parse_ratio

        try:
            factor = float(self.factor.value.strip().rstrip("x×"))
        except ValueError:
            await send_ephemeral(interaction, f"Zoom out by a number from 1 to 2, not {self.factor.value[:20]!r}.")
            return
        aspect = parse_ratio(self.aspect.value, "The aspect ratio") if self.aspect.value.strip() else None
        await outpaint_job(
            interaction, bot, record, self.index, "custom", zoom=factor, aspect=aspect, prompt=self.prompt.value
        )

    async def on_error(self, interaction: discord.Interaction[EaselBot], error: Exception, /) -> None:  # type: ignore[override]
        await handle_error(interaction, error)


_MENU_PATTERN = r"easel:imagemenu:(?P<job_id>[0-9a-f]{6,32})"
MENU_KINDS = ("vary", "square", "left", "right", "up", "down")  # per image of a batch: 6 x 4 images <= 25 options
MENU_LABELS = {
    "vary": "Vary",
    "square": "Make Square",
    "left": "Pan ⬅",
    "right": "Pan ➡",
    "up": "Pan ⬆",
    "down": "Pan ⬇",
}
MAX_MENU_IMAGES = 4

Select = discord.ui.Select[discord.ui.View]


class ImageMenu(discord.ui.DynamicItem[Select], template=_MENU_PATTERN):
    """A batch's last row: Vary, Zoom Out 2× and Pan for each image (Discord allows 5 rows of components)."""

    def __init__(self, job_id: str, images: int = 0) -> None:
        options = [
            discord.SelectOption(label=f"Image {index + 1}: {MENU_LABELS[kind]}", value=f"{kind}:{index}")
            for index in range(min(images, MAX_MENU_IMAGES))
            for kind in MENU_KINDS
        ] or [discord.SelectOption(label="-", value="none:0")]
        super().__init__(
            discord.ui.Select(
                custom_id=f"easel:imagemenu:{job_id}", placeholder="Vary, zoom out or pan one image…", options=options
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: Any, /
    ) -> Self:
        return cls(match["job_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        data = cast("dict[str, Any]", interaction.data or {})
        kind, _, raw_index = str((data.get("values") or ["none:0"])[0]).partition(":")

        async def act(bot: EaselBot, record: JobRecord) -> None:
            index = int(raw_index)
            if kind == "vary":
                await vary_image(interaction, bot, record, index)
            elif kind in KINDS:
                await outpaint_job(interaction, bot, record, index, kind)

        await on_job(interaction, self.job_id, act)


async def vary_image(interaction: discord.Interaction[EaselBot], bot: EaselBot, record: JobRecord, index: int) -> None:
    """Midjourney's V1-V4: a variation of one image of the batch (its seed, a new variation seed)."""
    import random

    from bot.replay import replay
    from engine.params import RANDOM_SEED_RANGE

    params = record.params
    if index >= params.batch_size:
        await send_ephemeral(interaction, f"This job has no image {index + 1}.")
        return
    here = bot.ceilings_here(interaction)
    varied = await replay(
        params,
        bot,
        here.limits,
        seed=params.image_seeds()[index],
        batch_size=1,
        subseed=random.SystemRandom().randrange(RANDOM_SEED_RANGE),
        subseed_strength=VARIATION_STRENGTH,
    )
    await bot.runner.start_job(interaction, varied, max_queued=here.queue_cap)


VARIATION_STRENGTH = 0.15
