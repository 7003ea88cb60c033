"""The one error handler: EaselErrors and failed checks become short ephemeral replies; anything else is
logged with the job id and the user gets a generic line (never a traceback)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot import render
from engine.errors import EaselError

if TYPE_CHECKING:
    from bot.client import EaselBot

log = logging.getLogger(__name__)

UNEXPECTED = "Something went wrong on our side; it has been logged."
JOB_ID_KEY = "easel_job_id"  # interaction.extras key: the job a handler was working on, for the log line


async def send_ephemeral(interaction: discord.Interaction[EaselBot], text: str) -> None:
    """Reply ephemerally whether or not the interaction was already acknowledged; the text cut to what Discord
    takes, and a reply Discord refuses as malformed sent again as plain, shorter text."""
    text = render.fit(text)
    for attempt in (text, render.fit(discord.utils.escape_markdown(text), 1500)):
        try:
            if interaction.response.is_done():
                await interaction.followup.send(attempt, ephemeral=True)
            else:
                await interaction.response.send_message(attempt, ephemeral=True)
            return
        except discord.HTTPException as err:
            if err.status == 404 and not interaction.response.is_done():
                await _in_channel(interaction, text)  # the interaction was lost before it could be answered
                return
            if err.status != 400 or attempt is not text:
                log.warning("could not send an error reply for interaction %s", interaction.id, exc_info=True)
                return
            log.warning("interaction %s: Discord refused a reply (%s); sending it plainer", interaction.id, err)


async def _in_channel(interaction: discord.Interaction[EaselBot], text: str) -> None:
    """The answer to a command Discord lost (it could not be acknowledged): a channel message to the user."""
    channel = interaction.channel
    if channel is None or not isinstance(channel, discord.abc.Messageable):
        return
    mention = f"<@{interaction.user.id}>"
    try:
        await channel.send(
            render.fit(f"{mention} {text}"),
            allowed_mentions=discord.AllowedMentions(users=[discord.Object(interaction.user.id)]),
        )
    except discord.HTTPException:
        log.warning("could not answer lost interaction %s in its channel", interaction.id, exc_info=True)


async def withdraw(interaction: discord.Interaction[EaselBot], text: str) -> None:
    """Refuse after a public "thinking" defer: remove the placeholder, then tell only the user (a followup to a
    deferred reply would fill the placeholder publicly, whatever its flags)."""
    try:
        await interaction.delete_original_response()
    except discord.HTTPException:
        log.warning("could not remove the placeholder of interaction %s", interaction.id, exc_info=True)
    await send_ephemeral(interaction, text)


def user_message(error: BaseException) -> str | None:
    """The text a user may see for an expected error; None for an unexpected one."""
    if isinstance(error, app_commands.CommandInvokeError | app_commands.TransformerError):
        error = error.__cause__ or error
        if isinstance(error, app_commands.CommandInvokeError):
            error = error.original
    if isinstance(error, EaselError):
        return str(error)
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down: try again in {error.retry_after:.0f} s."
    if isinstance(error, app_commands.CheckFailure):
        return str(error) or "You cannot use this command here."
    return None


async def handle_error(interaction: discord.Interaction[EaselBot], error: BaseException) -> None:
    """Tree-level handler (also called by the buttons): expected errors to the user, the rest to the log."""
    message = user_message(error)
    if message is None:
        original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        log.error(
            "unexpected error in %s (job %s)",
            _describe(interaction),
            interaction.extras.get(JOB_ID_KEY, "-"),
            exc_info=original,
        )
        message = UNEXPECTED
    await send_ephemeral(interaction, message)


def _describe(interaction: discord.Interaction[EaselBot]) -> str:
    if interaction.command is not None:
        return f"/{interaction.command.qualified_name}"
    data: dict[str, object] = dict(interaction.data or {})
    return str(data.get("custom_id", interaction.type.name))
