"""`/info` (Midjourney's habit): your queued and running jobs with their place in the queue, your latest finished
ones with a link to each result, and your queue allowance; only you see it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.store import JobRecord, JobStatus

if TYPE_CHECKING:
    from bot.client import EaselBot

RECENT = 10
MAX_DESCRIPTION = 4096  # Discord's cap on an embed's description (6,000 for the whole embed)
PROMPT_CHARS = 40
MODEL_CHARS = 32

_BRACKET = re.compile(r"(?<!\\)([\[\]])")

_STATUS = {
    JobStatus.FINISHED: "✅ done",
    JobStatus.FAILED: "❌ failed",
    JobStatus.CANCELLED: "🚫 cancelled",
    JobStatus.INTERRUPTED: "⚠️ cut short by a restart",
    JobStatus.DELETED: "🗑️ deleted",
}


def short(text: str, limit: int) -> str:
    """User text on one line, cut to `limit`, with markdown and masked-link brackets escaped."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    # escape_markdown escapes a bracket only where it opens a masked link; escape the rest too.
    escaped = _BRACKET.sub(r"\\\1", discord.utils.escape_markdown(flat))
    return escaped or "(empty prompt)"


def message_link(record: JobRecord) -> str | None:
    if record.message_id is None or record.channel_id is None:
        return None
    guild = record.guild_id if record.guild_id is not None else "@me"
    return f"https://discord.com/channels/{guild}/{record.channel_id}/{record.message_id}"


def _job(record: JobRecord) -> str:
    params = record.params
    model = params.model.replace("`", "'")  # shown in a code span, where escapes would show
    model = model if len(model) <= MODEL_CHARS else model[: MODEL_CHARS - 1] + "…"
    return f"`{record.job_id}` {short(params.prompt, PROMPT_CHARS)} · `{model}` · seed {params.seed}"


def place(position: int | None) -> str:
    """The executor's answer for a job the store holds open."""
    if position is None:
        return "waiting to be queued again"
    if position == 0:
        return "🎨 running"
    return f"⏳ #{position} in the queue"


def open_line(record: JobRecord, position: int | None) -> str:
    return f"- {_job(record)} — {place(position)}"


def recent_line(record: JobRecord) -> str:
    when = int(record.finished_at if record.finished_at is not None else record.created_at)
    line = f"- {_job(record)} · <t:{when}:R> · {_STATUS.get(record.status, record.status.value)}"
    link = message_link(record) if record.status is JobStatus.FINISHED else None
    return f"{line} · [result]({link})" if link else line


def info_embed(
    open_jobs: Sequence[tuple[JobRecord, int | None]], recent: Sequence[JobRecord], allowance: int
) -> discord.Embed:
    """The whole /info reply; the oldest recent lines give way if the description would pass Discord's cap."""
    head = [f"**Queue:** {len(open_jobs)} of your {allowance} places in use (jobs waiting or running)."]
    waiting = ["", "**Waiting or running**", *(open_line(r, p) for r, p in open_jobs)] if open_jobs else []
    finished = [recent_line(r) for r in recent]
    if not finished and not open_jobs:
        head.append("You have no jobs yet: try `/imagine`.")

    def text(kept: list[str]) -> str:
        tail = ["", f"**Latest {len(kept)}** (`/show job_id:` posts one again)", *kept] if kept else []
        return "\n".join(head + waiting + tail)

    while len(text(finished)) > MAX_DESCRIPTION and finished:
        finished.pop()
    description = text(finished)[:MAX_DESCRIPTION]
    return discord.Embed(title="Your jobs", description=description, colour=discord.Colour.blurple())


class InfoCog(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    @app_commands.command(name="info", description="Your queued and recent jobs, and your queue allowance")
    async def info(self, interaction: discord.Interaction[EaselBot]) -> None:
        store, executor = self.bot.store, self.bot.executor
        open_jobs = [(r, executor.position(r.job_id)) for r in store.user_open_jobs(interaction.user.id)]
        recent = store.user_recent_jobs(interaction.user.id, limit=RECENT)
        embed = info_embed(open_jobs, recent, self.bot.settings.max_queued_per_user)
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(InfoCog(cast("EaselBot", bot)))
