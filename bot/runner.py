"""Submits jobs for an interaction (or again after a restart) and follows their events, turning each into (at
most) one message edit.

The executor never calls back into Discord: the runner reads the ticket's event stream on the event loop, so a
slow or failed edit only delays this job's message, never the GPU or another job.
"""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import discord

from bot import render
from bot.buttons import cancel_view, describe_view, result_view
from bot.errors import JOB_ID_KEY
from bot.store import JobRecord, JobStatus, JobStore
from engine.errors import StorageFullError
from engine.jobs import (
    Executor,
    Failed,
    Finished,
    Job,
    JobResult,
    Progress,
    Queued,
    Started,
    Ticket,
    WasCancelled,
)
from engine.params import GenerationParams

if TYPE_CHECKING:
    from bot.client import EaselBot

log = logging.getLogger(__name__)

# Discord lets an interaction token edit its reply for 15 minutes; leave a margin for a slow upload.
TOKEN_LIFETIME = timedelta(minutes=14)
EDIT_INTERVAL = 2.0
ALIVE_INTERVAL = 0.25  # seconds between two "alive" beats in the store
# A final message (result, failure, cancel) is tried again after these pauses when Discord answers 5xx past
# discord.py's own retries: an outage of a minute or so delays the result, it does not lose it.
RETRY_DELAYS = (2.0, 8.0, 30.0)


# (spoiler, a note for the user) for a job about to be queued, or a user-facing EaselError that refuses it.
ContentPolicy = Callable[["discord.Interaction[EaselBot]", GenerationParams], tuple[bool, str | None]]
# What happens to a described image of a rating in a guild's channel: "allow", "spoiler" or "refuse".
RatingPolicy = Callable[[int | None, int | None, str], str]


def new_job_id() -> str:
    return secrets.token_hex(6)


class JobRunner:
    """Owns the follower tasks of running jobs; one per bot."""

    def __init__(
        self,
        executor: Executor,
        store: JobStore,
        *,
        edit_interval: float = EDIT_INTERVAL,
        token_lifetime: timedelta = TOKEN_LIFETIME,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        content_policy: ContentPolicy | None = None,
        rating_policy: RatingPolicy | None = None,
    ) -> None:
        """`content_policy`: what may be drawn where (the bot's NSFW and DM rules): given the interaction and the
        params, it raises a user-facing EaselError to refuse, or says whether the images go behind a spoiler."""
        self.executor = executor
        self.store = store
        self.content_policy = content_policy
        self.rating_policy = rating_policy
        self.edit_interval = edit_interval
        self.token_lifetime = token_lifetime
        self.retry_delays = retry_delays
        self._tasks: set[asyncio.Task[None]] = set()
        self._beat: asyncio.Task[None] | None = None
        self._cancel_requested: set[str] = set()

    async def start_job(
        self,
        interaction: discord.Interaction[EaselBot],
        params: GenerationParams,
        notes: Sequence[str] = (),
        *,
        max_queued: int | None = None,
    ) -> str:
        """Queue `params` for the interaction's user, then acknowledge it with a "thinking" reply.

        Submitting first means a full queue is refused with an ephemeral message and nothing public appears;
        submit never waits on the GPU, so this stays well inside Discord's 3 s. (A caller that had to defer
        earlier, e.g. to download an attachment, has acknowledged it already.) `max_queued`: the per-user queue
        ceiling where the job was asked.
        """
        spoiler, policy_note = self.content_policy(interaction, params) if self.content_policy else (False, None)
        if policy_note is not None:
            notes = [*notes, policy_note]
        job_id = new_job_id()
        interaction.extras[JOB_ID_KEY] = job_id
        ticket = await self.executor.submit(Job(job_id, str(interaction.user.id), params, max_queued))
        try:
            self.store.add_job(
                job_id,
                user_id=interaction.user.id,
                guild_id=interaction.guild_id,
                channel_id=interaction.channel_id,
                params=params,
                spoiler=spoiler,
            )
        except StorageFullError:
            # A job the store does not hold would be lost by a restart and its buttons would not work: refuse it.
            log.error("job %s refused: the job store's disk is full", job_id)
            self.executor.cancel(job_id)
            raise
        log.info("job %s queued for user %s (model %s)", job_id, interaction.user.id, params.model)
        log.debug("job %s prompt %r", job_id, params.prompt)
        acknowledged = True
        if not interaction.response.is_done():
            try:
                await interaction.response.defer(thinking=True)
            except discord.HTTPException as err:
                # Discord failed to take the acknowledgement, but the command reached us: the job runs, and its
                # outcome goes to the channel with a mention, as for a job resumed after a restart.
                log.warning(
                    "job %s: Discord did not take the acknowledgement (%s); it reports in the channel", job_id, err
                )
                acknowledged = False
        target = _ReplyTarget(
            interaction.client,
            job_id,
            user_id=interaction.user.id,
            channel_id=interaction.channel_id,
            guild_id=interaction.guild_id,
            interaction=interaction if acknowledged else None,
            token_lifetime=self.token_lifetime,
            edit_interval=self.edit_interval,
            retry_delays=self.retry_delays,
            spoiler=spoiler,
            # The reply becomes the result: its id lets the next start see a result delivered just before a crash.
            on_reply=lambda message_id: self._note(self.store.set_message, job_id, message_id),
        )
        self._spawn(self._follow(target, ticket, tuple(notes)), job_id)
        return job_id

    async def resume_job(
        self,
        client: discord.Client,
        record: JobRecord,
        params: GenerationParams,
        *,
        cut_short: bool,
        ran_for: float | None = None,
    ) -> None:
        """Queue a job left open by a previous process again, under its own id (so its buttons still match).

        No interaction token survives a restart: the job reports only its outcome, as a channel message that
        mentions the requester. Raises what `submit` raises; the caller tells the user.
        """
        ticket = await self.executor.submit(Job(record.job_id, str(record.user_id), params))
        self._note(self.store.mark_resumed, record.job_id, cut_short=cut_short, ran_for=ran_for)
        state = "was running" if cut_short else "was queued"
        log.info("job %s queued again after a restart (%s)", record.job_id, state)
        target = _ReplyTarget(
            client,
            record.job_id,
            user_id=record.user_id,
            channel_id=record.channel_id,
            guild_id=record.guild_id,
            interaction=None,
            token_lifetime=self.token_lifetime,
            edit_interval=self.edit_interval,
            retry_delays=self.retry_delays,
            spoiler=record.spoiler,
        )
        self._spawn(self._follow(target, ticket, ()), record.job_id)

    def cancel(self, job_id: str) -> bool:
        """Cancel a job at a user's request; False if it has already finished.

        Only these cancellations close a job: a WasCancelled nobody asked for comes from the executor shutting
        down, and that job stays open in the store for the next start to queue again.
        """
        self._cancel_requested.add(job_id)
        if self.executor.cancel(job_id):
            return True
        self._cancel_requested.discard(job_id)
        return False

    def _note(self, write: Callable[..., None], job_id: str, *args: Any, **kwargs: Any) -> None:
        """A store write about a job under way: a full disk is logged, and never stops the job or undoes what it
        delivered. The row keeps its last state (each write is whole or nothing); a job recorded as open when it
        had finished runs again after a restart, and its channel post's nonce keeps that from showing twice for a
        few minutes."""
        try:
            write(job_id, *args, **kwargs)
        except StorageFullError as err:
            log.error("job %s: could not record its progress in the job store (%s)", job_id, err)

    def _spawn(self, follow: Coroutine[Any, Any, None], job_id: str) -> None:
        task = asyncio.create_task(follow, name=f"easel-job-{job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_idle(self) -> None:
        """Wait until every followed job has delivered its last message (tests, graceful shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def start(self) -> None:
        """Beat in the store while this process lives: after a crash, how far the running job had got is told
        from the last beat (a job that kills the process dies at the same point every time)."""
        if self._beat is None:
            self._beat = asyncio.create_task(self._keep_alive(), name="easel-alive")

    async def _keep_alive(self) -> None:
        while True:
            try:
                self.store.alive()
            except StorageFullError as err:
                log.error("could not record that Easel is alive (%s)", err)
            await asyncio.sleep(ALIVE_INTERVAL)

    async def close(self) -> None:
        """Stop following; the jobs stay open in the store, and the next start queues them again."""
        if self._beat is not None:
            self._beat.cancel()
            await asyncio.gather(self._beat, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _follow(self, reply: _ReplyTarget, ticket: Ticket, notes: tuple[str, ...]) -> None:
        job = ticket.job
        try:
            async for event in ticket.events:
                if isinstance(event, Queued):
                    ready_at = None
                    if event.eta_seconds is not None:
                        ready_at = round(datetime.now(UTC).timestamp() + event.eta_seconds)
                    waiting = (*notes, event.waiting_for) if event.waiting_for else notes
                    await reply.edit(
                        render.queued(job.job_id, job.params, event.position, event.ahead, waiting, ready_at=ready_at),
                        throttled=reply.edits > 0,
                    )
                elif isinstance(event, Started):
                    self._note(self.store.set_status, job.job_id, JobStatus.RUNNING)
                    log.info("job %s started", job.job_id)
                    await reply.edit(render.started(job.job_id, job.params, notes), throttled=False)
                elif isinstance(event, Progress):
                    if event.preview is not None:
                        reply.preview = event.preview  # shown with the next edit that goes out
                    await reply.edit(
                        render.progress(job.job_id, job.params, event.step, event.total, notes),
                        throttled=True,
                    )
                elif isinstance(event, Finished):
                    log.info("job %s finished in %.1f s", job.job_id, event.result.seconds)
                    if job.params.is_describe and not await self._described(reply, job, event.result):
                        return
                    message_id = await reply.deliver(job, event.result, (*notes, *event.result.notes))
                    self._note(self.store.set_status, job.job_id, JobStatus.FINISHED)
                    if message_id is not None:
                        self._note(self.store.set_message, job.job_id, message_id)
                    return
                elif isinstance(event, Failed):
                    log.info("job %s failed: %s", job.job_id, event.error)
                    self._note(self.store.set_status, job.job_id, JobStatus.FAILED, error=str(event.error))
                    await reply.edit(render.failed(job.job_id, str(event.error)), throttled=False, final=True)
                    return
                elif isinstance(event, WasCancelled):
                    if job.job_id not in self._cancel_requested:
                        log.info("job %s stopped by a shutdown; it stays open for the next start", job.job_id)
                        return
                    log.info("job %s cancelled", job.job_id)
                    self._note(self.store.set_status, job.job_id, JobStatus.CANCELLED)
                    await reply.edit(render.cancelled(job.job_id), throttled=False, final=True)
                    return
        except asyncio.CancelledError:
            # Shutting down: the job stays queued/running in the store, to be queued again at the next start.
            raise
        except Exception:
            log.exception("job %s: reporting failed", job.job_id)
            self._note(self.store.set_status, job.job_id, JobStatus.FAILED, error="reporting failed")
            try:
                failed = render.failed(job.job_id, "Could not deliver the result.")
                await reply.edit(failed, throttled=False, final=True)
            except Exception:
                log.exception("job %s: could not tell the requester either", job.job_id)
        finally:
            self._cancel_requested.discard(job.job_id)

    async def _described(self, reply: _ReplyTarget, job: Job, result: JobResult) -> bool:
        """Keep a `/describe` result's suggestions for its buttons, and apply the server's rating policy: False when
        the image may not be shown here (the reply then says so)."""
        found = result.images[0].description if result.images else None
        suggestions = found.suggestions() if found is not None else []
        self._note(self.store.set_suggestions, job.job_id, suggestions)
        reply.suggestions = suggestions
        if found is None or self.rating_policy is None:
            return True
        action = self.rating_policy(reply.guild_id, reply.channel_id, found.rating)
        if action == "refuse":
            self._note(self.store.set_status, job.job_id, JobStatus.FINISHED)
            text = (
                f"The tagger rates this image **{found.rating}**; this server shows such images only in "
                "age-restricted channels."
            )
            await reply.edit(render.failed(job.job_id, text), throttled=False, final=True)
            return False
        if action == "spoiler":
            reply.spoiler = True
        return True


class _ReplyTarget:
    """Where a job reports: the interaction's reply while its token lives and the reply exists, a channel message
    after (or always, for a job resumed after a restart, which has no interaction), the requester's DMs when the
    bot may not post or attach in the channel.

    Only the final message must arrive: it is retried through a Discord outage, and every channel post carries a
    nonce that Discord enforces, so a post whose answer was lost and is sent again appears once.
    """

    def __init__(
        self,
        client: discord.Client,
        job_id: str,
        *,
        user_id: int,
        channel_id: int | None,
        guild_id: int | None,
        interaction: discord.Interaction[EaselBot] | None,
        token_lifetime: timedelta,
        edit_interval: float,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        on_reply: Callable[[int], None] | None = None,
        spoiler: bool = False,
    ) -> None:
        self.client = client
        self.spoiler = spoiler  # images (and previews) go out behind a spoiler
        self.suggestions: list[str] = []  # a `/describe` result's prompts, for its buttons
        self.on_reply = on_reply  # called once, with the reply's message id, after its first edit
        self.job_id = job_id
        self.user_id = user_id
        self.channel_id = channel_id
        self.guild_id = guild_id
        self.interaction = interaction
        self.deadline = interaction.created_at + token_lifetime if interaction is not None else None
        self.edit_interval = edit_interval
        self.retry_delays = retry_delays
        self.edits = 0
        self.preview: bytes | None = None  # the latest preview not yet shown
        self._showing_preview = False
        self._last_edit = float("-inf")
        self._loop = asyncio.get_running_loop()

    @property
    def mention(self) -> str:
        return f"<@{self.user_id}>"

    def token_alive(self) -> bool:
        return self.deadline is not None and datetime.now(UTC) < self.deadline

    def _reply_lost(self, err: discord.HTTPException) -> bool:
        """401: the token died early; 404: a moderator deleted the reply (or the user dismissed it). Either way
        the job reports in the channel from now on."""
        if err.status in (401, 404):
            log.warning("job %s: reply gone (%s); reporting in the channel instead", self.job_id, err)
            self.deadline = None
            return True
        return False

    async def edit(self, content: str, *, throttled: bool, final: bool = False) -> None:
        """Edit the reply unless an edit went out less than `edit_interval` ago (for throttled updates)."""
        now = self._loop.time()
        if throttled and now - self._last_edit < self.edit_interval:
            return
        if self.interaction is not None and self.token_alive():
            self._last_edit = now
            self.edits += 1
            try:
                await self._retried(lambda: self._edit_reply(content, final), final=final)
                return
            except discord.HTTPException as err:
                if not self._reply_lost(err):
                    log.warning("job %s: edit failed (%s)", self.job_id, err)  # the job itself carries on
                    if not final:
                        return
        if final:  # a terminal state must reach the user even without the reply
            await self._channel_send(f"{self.mention} {content}", nonce="e")

    async def _edit_reply(self, content: str, final: bool) -> None:
        assert self.interaction is not None
        # The preview is the message's one attachment: replaced when a newer one came, removed at the end.
        files: list[discord.File] | None = None
        if final:
            files = [] if self._showing_preview else None
        elif self.preview is not None:
            name = render.preview_filename(self.job_id)
            files = [discord.File(io.BytesIO(self.preview), filename=name, spoiler=self.spoiler)]
        view = None if final else cancel_view(self.job_id)
        if files is None:
            message = await self.interaction.edit_original_response(content=content, view=view)
        else:
            message = await self.interaction.edit_original_response(content=content, attachments=files, view=view)
        if self.on_reply is not None:
            self.on_reply(message.id)
            self.on_reply = None
        if final:
            self._showing_preview = False
        elif files:
            self.preview = None
            self._showing_preview = True

    async def _retried(self, send: Callable[[], Awaitable[Any]], *, final: bool) -> Any:
        """`send()`, tried again after each of `retry_delays` on a 5xx (final messages only)."""
        delays = self.retry_delays if final else ()
        for delay in delays:
            try:
                return await send()
            except discord.DiscordServerError as err:
                log.warning("job %s: Discord failed (%s); trying again in %.1f s", self.job_id, err, delay)
                await asyncio.sleep(delay)
        return await send()

    async def deliver(self, job: Job, result: JobResult, notes: Sequence[str]) -> int | None:
        """Send the finished images (split over several messages if needed); returns the main message's id."""
        groups = render.split_images([len(image.png) for image in result.images])
        alive = self.interaction is not None and self.token_alive()

        def rendered(mention: str) -> render.Reply:
            if job.params.is_describe:
                return render.described(job.job_id, result, self.suggestions, notes, mention=mention,
                                        spoiler=self.spoiler)  # fmt: skip
            return render.finished(job.job_id, result, notes, mention=mention, images=groups[0])

        first = rendered("" if alive else self.mention)
        view = (
            describe_view(job.job_id, len(self.suggestions))
            if job.params.is_describe
            else result_view(job.job_id, len(result.images), upscaled=job.params.is_extras)
        )
        message: discord.Message | None = None
        if alive and self.interaction is not None:
            interaction = self.interaction
            try:
                message = await self._retried(
                    lambda: interaction.edit_original_response(
                        content=first.content, attachments=_files(first.uploads, self.spoiler), view=view
                    ),
                    final=True,
                )
            except discord.HTTPException as err:
                if not self._reply_lost(err):
                    raise
                alive = False
                first = rendered(self.mention)
        if message is None:
            message = await self._channel_send(first.content, uploads=first.uploads, view=view, nonce="d0")
        for number, group in enumerate(groups[1:], start=1):
            more = [
                render.Upload(render.image_filename(job.job_id, i, result.images[i]), result.images[i].png)
                for i in group
            ]
            if alive and self.interaction is not None:
                followup, files = self.interaction.followup, tuple(more)
                await self._retried(lambda: followup.send(files=_files(files, self.spoiler), wait=True), final=True)  # noqa: B023
            else:
                await self._channel_send("", uploads=more, nonce=f"d{number}")
        return message.id

    async def _channel_send(
        self,
        content: str,
        *,
        uploads: Sequence[render.Upload] = (),
        view: discord.ui.View | None = None,
        nonce: str,
    ) -> discord.Message:
        """Post in the job's channel; where the bot may not post (or attach), in the requester's DMs instead; where
        those are closed too, the text alone in the channel, saying why the images are missing."""
        channel = messageable(self.client, self.interaction, self.channel_id, self.guild_id)
        try:
            return await self._post(channel, content, uploads, view, nonce=f"{self.job_id}{nonce}")
        except discord.Forbidden as err:
            log.warning("job %s: may not post in channel %s (%s); sending a DM", self.job_id, self.channel_id, err)
        where = f"<#{self.channel_id}>" if self.channel_id is not None else "the channel"
        note = f"(I may not post in {where}, so your job {self.job_id} comes here.)"
        try:
            dm = await self.client.create_dm(discord.Object(self.user_id))
            return await self._post(dm, f"{content}\n{note}".strip(), uploads, view, nonce=None)
        except discord.HTTPException as err:
            if not uploads:
                raise
            log.warning("job %s: no DM either (%s); posting the text alone", self.job_id, err)
        missing = (
            f"{self.mention} I may not attach images in {where} and could not send them to you directly "
            "(are your DMs closed?). An admin can give me the Attach Files permission here."
        )
        return await self._post(channel, f"{content}\n{missing}" if content else missing, (), None, nonce=None)

    async def _post(
        self,
        channel: discord.abc.Messageable,
        content: str,
        uploads: Sequence[render.Upload],
        view: discord.ui.View | None,
        *,
        nonce: str | None,
    ) -> discord.Message:
        mentions = discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(self.user_id)])
        extra: dict[str, Any] = {} if nonce is None else {"nonce": nonce}
        if view is not None:
            extra["view"] = view

        async def send() -> discord.Message:
            files = _files(uploads, self.spoiler)
            return await channel.send(content, files=files, allowed_mentions=mentions, **extra)

        message: discord.Message = await self._retried(send, final=True)
        return message


def messageable(
    client: discord.Client,
    interaction: discord.Interaction[EaselBot] | None,
    channel_id: int | None,
    guild_id: int | None,
) -> discord.abc.Messageable:
    """The interaction's channel if discord.py has it, else a partial one built from the stored ids."""
    if interaction is not None and isinstance(interaction.channel, discord.abc.Messageable):
        return interaction.channel
    if channel_id is None:
        raise ValueError("no channel to post in")
    return client.get_partial_messageable(channel_id, guild_id=guild_id)


def _files(uploads: Sequence[render.Upload], spoiler: bool = False) -> list[discord.File]:
    """Fresh file objects for each attempt (discord.py closes the ones it sent); images behind a spoiler if asked."""
    return [
        discord.File(io.BytesIO(u.data), filename=u.filename, spoiler=spoiler and not u.filename.endswith(".txt"))
        for u in uploads
    ]
