"""What every component of a result (buttons, the batch menu, the forms they open) does first: name the job in the
interaction for the error handler and the logs, look the job up in the store, and answer any failure as the command
tree's handler does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import discord

from bot.errors import JOB_ID_KEY, handle_error, send_ephemeral
from bot.store import JobRecord

if TYPE_CHECKING:
    from bot.client import EaselBot

JobAction = Callable[["EaselBot", JobRecord], Awaitable[None]]


async def on_job(interaction: discord.Interaction[Any], job_id: str, action: JobAction) -> None:
    """Run `action` with the bot and the job's record; a job the store no longer knows is said so."""
    interaction.extras[JOB_ID_KEY] = job_id
    bot = cast("EaselBot", interaction.client)
    record = bot.store.get_job(job_id)
    if record is None:
        await send_ephemeral(interaction, "This job is no longer known to the bot.")
        return
    try:
        await action(bot, record)
    except Exception as err:  # the components' outermost boundary: same policy as the tree's handler
        await handle_error(interaction, err)
