"""`/show job_id:` (Midjourney's habit): post a finished job again, with working buttons.

Easel keeps no images, only each job's params, so the images are drawn again from them through the executor: the
same params and seed give the same image, and the message says it was regenerated. That costs a GPU run but needs
no image storage, cap or clean-up, and a repost is queued, followed and resumed after a restart like any job.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import send_ephemeral
from bot.replay import replay
from bot.store import JobRecord, JobStatus
from commands.choices import MAX_CHOICES

if TYPE_CHECKING:
    from bot.client import EaselBot

log = logging.getLogger(__name__)

AUTOCOMPLETE_SCAN = 200  # the user's latest finished jobs that autocomplete looks through


def _quoted(job_id: str) -> str:
    """A typed job id, safe to echo inside a code span."""
    return "`" + job_id.replace("`", "'")[:40] + "`"


def refusal(record: JobRecord | None, typed: str, *, user_id: int, guild_id: int | None) -> str | None:
    """Why this user may not show this job here (the text to tell them), or None when they may.

    In a server anyone may show a job made in that server; in DMs only your own jobs.
    """
    if record is None:
        return f"There is no job {_quoted(typed)}. `/info` lists your jobs; a job's id ends each of its messages."
    job = _quoted(record.job_id)
    if guild_id is None and record.user_id != user_id:
        return f"Job {job} is someone else's: in DMs, `/show` posts only your own jobs."
    if guild_id is not None and record.guild_id != guild_id:
        return f"Job {job} was not made in this server: here, `/show` posts only jobs made in this server."
    if record.status in (JobStatus.QUEUED, JobStatus.RUNNING):
        return f"Job {job} has not finished yet; its result is posted when it is done."
    if record.status is JobStatus.DELETED:
        return f"Job {job}'s result was deleted, so it is not shown again."
    if record.status is not JobStatus.FINISHED:
        return f"Job {job} did not finish ({record.status.value}), so there is no result to show."
    return None


def regenerated_note(job_id: str) -> str:
    return f"Job {job_id} regenerated from its parameters (same seed, same image)."


def choice_label(record: JobRecord) -> str:
    prompt = " ".join(record.params.prompt.split()) or "(empty prompt)"
    label = f"{record.job_id} · {prompt}"
    return label if len(label) <= 100 else label[:99] + "…"


class ShowCog(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    @app_commands.command(name="show", description="Post a finished job again, with its buttons")
    @app_commands.describe(job_id="The job's id (autocompletes your recent jobs; /info lists them)")
    async def show(self, interaction: discord.Interaction[EaselBot], job_id: str) -> None:
        typed = job_id.strip().lower()
        record = self.bot.store.get_job(typed)
        refused = refusal(record, typed, user_id=interaction.user.id, guild_id=interaction.guild_id)
        if refused is not None:
            await send_ephemeral(interaction, refused)
            return
        assert record is not None  # refusal() refuses an unknown id
        # Checked again against today's limits and models; unchanged params come back equal, seed included.
        here = self.bot.ceilings_here(interaction)
        params = await replay(record.params, self.bot, here.limits)
        shown = await self.bot.runner.start_job(
            interaction, params, [regenerated_note(record.job_id)], max_queued=here.queue_cap
        )
        log.info("job %s: shown again as job %s for user %s", record.job_id, shown, interaction.user.id)

    @show.autocomplete("job_id")
    async def _job_choices(
        self, interaction: discord.Interaction[EaselBot], current: str
    ) -> list[app_commands.Choice[str]]:
        typed = current.strip().lower()
        recent = self.bot.store.user_recent_jobs(
            interaction.user.id, limit=AUTOCOMPLETE_SCAN, statuses=(JobStatus.FINISHED,)
        )
        found = [r for r in recent if typed in r.job_id or typed in r.params.prompt.lower()]
        return [app_commands.Choice(name=choice_label(r), value=r.job_id) for r in found[:MAX_CHOICES]]


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(ShowCog(cast("EaselBot", bot)))
