"""Jobs a previous process left queued or running are queued again, in their original order, once the bot is
ready; each reports its outcome in its channel (no interaction token survives a restart)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import discord

from bot import render
from bot.buttons import shows_result
from bot.replay import replay
from bot.runner import messageable
from bot.store import JobRecord, JobStatus
from engine.errors import EaselError

if TYPE_CHECKING:
    from bot.client import EaselBot

log = logging.getLogger(__name__)

# A job that itself kills the process (say it is killed for memory at the same step every time) must not take every
# restart down with it; a job that merely was running when something else killed the process must not pay for it.
# They are told apart by how far the job had run at each crash: a poison job dies at the same point every time.
SAME_POINT_CRASHES = 4  # crashes in a row at one point that blame the job...
SAME_POINT_SECONDS = 0.5  # ...within this many seconds of each other (the alive beat is 0.25 s)
MAX_CRASHES = 25  # crashes at any points after which it is given up all the same


def poison_reason(points: Sequence[float | None]) -> str | None:
    """Why a job cut short by crashes at these points (seconds it had run, None when unknown) is not tried again,
    or None. Points that cannot be told apart count as the same point."""
    if len(points) >= MAX_CRASHES:
        return f"Easel stopped {len(points)} times while it was running, so it is not tried again."
    last = points[-SAME_POINT_CRASHES:]
    if len(last) < SAME_POINT_CRASHES:
        return None
    if any(point is None for point in last):
        known: list[float] = []
    else:
        known = [point for point in last if point is not None]
        if max(known) - min(known) > SAME_POINT_SECONDS:
            return None
    where = f", each time about {sum(known) / len(known):.1f} s into it" if known else ""
    return (
        f"Easel stopped {SAME_POINT_CRASHES} times in a row while it was running{where}: it seems to stop Easel "
        "itself, so it is not tried again."
    )


async def resume_open_jobs(bot: EaselBot, left_open: Sequence[JobRecord] | None = None) -> int:
    """Queue every job the previous process left open again (`left_open`, read before this process took any
    command; by default the store's open jobs); returns how many were. Refusals are told to their requester."""
    resumed = 0
    records = []
    for record in bot.store.open_jobs() if left_open is None else left_open:
        if record.message_id is not None and record.channel_id is not None and await _delivered(bot, record):
            # The result went out and the process died before it was recorded: running it again would post it
            # twice. (Checked for every job before any is queued, so they queue back to back, in order.)
            bot.store.set_status(record.job_id, JobStatus.FINISHED)
            log.info("job %s: its result was delivered before the restart; not run again", record.job_id)
        else:
            records.append(record)
    for record in records:
        try:
            resumed += await _resume(bot, record)
        except Exception:  # one bad record must not strand the jobs behind it
            log.exception("job %s: could not be resumed", record.job_id)
            bot.store.set_status(record.job_id, JobStatus.INTERRUPTED, error="could not be resumed")
    if resumed:
        log.info("queued %d job(s) from the previous run again", resumed)
    return resumed


async def _resume(bot: EaselBot, record: JobRecord) -> bool:
    if record.channel_id is None:
        bot.store.set_status(record.job_id, JobStatus.INTERRUPTED, error="no channel to report in")
        log.info("job %s: not resumed, it has no channel", record.job_id)
        return False
    cut_short = record.status is JobStatus.RUNNING
    ran_for = _ran_for(record, bot.store.last_alive()) if cut_short else None
    poisoned = poison_reason([*record.crash_points, ran_for] if cut_short else record.crash_points)
    if poisoned is not None:
        reason = poisoned
    else:
        try:
            asked_in = bot.get_channel(record.channel_id)  # a thread follows its parent's settings
            scope = asked_in.parent_id if isinstance(asked_in, discord.Thread) else record.channel_id
            limits = bot.ceilings(record.guild_id, scope).limits
            params = await replay(record.params, bot, limits)
            await bot.runner.resume_job(bot, record, params, cut_short=cut_short, ran_for=ran_for)
            return True
        except EaselError as err:  # limits lowered, model removed, queue full...
            reason = str(err)
    bot.store.set_status(record.job_id, JobStatus.INTERRUPTED, error=reason)
    log.info("job %s: not resumed after a restart: %s", record.job_id, reason)
    channel = messageable(bot, None, record.channel_id, record.guild_id)
    try:
        await channel.send(
            render.not_resumed(record.job_id, record.params, f"<@{record.user_id}>", reason),
            allowed_mentions=discord.AllowedMentions(users=[discord.Object(record.user_id)]),
        )
    except discord.HTTPException as err:
        log.warning("job %s: could not tell the user it was not resumed (%s)", record.job_id, err)
    return False


def _ran_for(record: JobRecord, alive_at: float | None) -> float | None:
    """How long the job had run when its process was last known alive (None when either is unknown)."""
    if record.started_at is None or alive_at is None:
        return None
    return max(0.0, alive_at - record.started_at)


async def _delivered(bot: EaselBot, record: JobRecord) -> bool:
    """Whether the job's message (its reply, which becomes the result) already shows the result's buttons."""
    assert record.message_id is not None
    try:
        message = await messageable(bot, None, record.channel_id, record.guild_id).fetch_message(record.message_id)
    except discord.HTTPException as err:  # deleted, or the bot may not read the channel: run it again
        log.info("job %s: could not read its message (%s)", record.job_id, err)
        return False
    return shows_result(message, record.job_id)
