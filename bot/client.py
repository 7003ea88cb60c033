"""The discord.py client: it loads the command extensions by name, registers the buttons, runs the job runner and
the error handler, and syncs its slash commands when asked or when they changed."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from typing import TypeVar, cast

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.buttons import DYNAMIC_ITEMS
from bot.errors import handle_error
from bot.layers import Ceilings, ceilings
from bot.nsfw import Outside, Policy, decide, decide_rating, refusal
from bot.ports import ModelCatalog, NetworkCatalog
from bot.resume import resume_open_jobs
from bot.runner import EDIT_INTERVAL, RETRY_DELAYS, TOKEN_LIFETIME, JobRunner
from bot.store import JobRecord, JobStore
from config.settings import Settings
from engine.blobs import BlobStore
from engine.errors import InvalidParamsError
from engine.jobs import Executor
from engine.params import GenerationParams, Limits
from engine.request import CHANNEL, SERVER, USER, Catalog, Layer, Request, Resolved
from engine.request import resolve as resolve_request

log = logging.getLogger(__name__)
T = TypeVar("T")

# The slash-command extensions, loaded by name (each one isolated: one that fails to load is logged and skipped).
EXTENSIONS = (
    "commands.imagine",
    "commands.loras",
    "commands.models",
    "commands.settings",
    "commands.info",
    "commands.show",
    "commands.admin",
    "commands.help",
    "commands.pnginfo",
    "commands.upscale",
    "commands.styles",
    "commands.nsfw",
    "commands.describe",
)


def scope_channel(interaction: discord.Interaction[EaselBot]) -> int | None:
    """The channel whose settings apply: a thread follows its parent channel."""
    channel = interaction.channel
    if isinstance(channel, discord.Thread):
        return channel.parent_id
    return interaction.channel_id


class EaselTree(app_commands.CommandTree["EaselBot"]):
    async def on_error(self, interaction: discord.Interaction[EaselBot], error: app_commands.AppCommandError) -> None:
        await handle_error(interaction, error)


class EaselBot(commands.Bot):
    """Holds plain collaborators (settings, limits, executor, registry, networks, store, blobs), all built once by
    the composition root; Discord objects never reach them."""

    def __init__(
        self,
        settings: Settings,
        executor: Executor,
        registry: ModelCatalog,
        store: JobStore,
        *,
        networks: NetworkCatalog,
        limits: Limits,
        blobs: BlobStore,
        sync_commands: bool = False,
        extensions: tuple[str, ...] = EXTENSIONS,
        guild_ready_timeout: float = 2.0,
        edit_interval: float = EDIT_INTERVAL,
        token_lifetime: timedelta = TOKEN_LIFETIME,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        """`sync_commands`: sync the slash commands at start-up even if they did not change (the start-up flag).

        The last five keyword arguments exist for tests, which shorten them.
        """
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            intents=discord.Intents(guilds=True),
            tree_cls=EaselTree,
            guild_ready_timeout=guild_ready_timeout,
            # Prompts are user text: nothing the bot echoes may ping anyone unless a call says so.
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.settings = settings
        self.executor = executor
        self.registry = registry
        self.networks = networks
        self.store = store
        # Discord takes at most this many files in one message; the images of a batch go out together.
        self.limits = replace(limits, max_batch=min(limits.max_batch, render.MAX_FILES))
        self.blobs = blobs  # where init images are stored; the engine reads them from the same store
        self.force_sync = sync_commands
        self.extensions_to_load = extensions
        self.runner = JobRunner(
            executor,
            store,
            edit_interval=edit_interval,
            token_lifetime=token_lifetime,
            retry_delays=retry_delays,
            content_policy=self.content_policy,
            rating_policy=self.rating_policy,
        )
        self.resume_task: asyncio.Task[None] | None = None
        self.downloads: aiohttp.ClientSession | None = None  # for attachments; opened in setup_hook
        # Parsing pasted blocks and prompts, checking and hashing uploads: never on the event loop.
        self._edge = ThreadPoolExecutor(max_workers=2, thread_name_prefix="easel-edge")

    def layers(self, guild_id: int | None, channel_id: int | None) -> list[Layer]:
        """The server's and the channel's stored defaults and ceilings, lowest first (none in a DM). The server's
        default model is the one `/model set` chose."""
        if guild_id is None:
            return []
        defaults, limits = self.store.scope_settings(f"guild:{guild_id}")
        model = self.store.guild_default_model(guild_id)
        layers = [Layer(SERVER, {"model": model, **defaults} if model else defaults, limits)]
        if channel_id is not None:
            defaults, limits = self.store.scope_settings(f"channel:{channel_id}")
            layers.append(Layer(CHANNEL, defaults, limits))
        return layers

    def stored_layers(self, interaction: discord.Interaction[EaselBot]) -> list[Layer]:
        """The stored defaults a member's request here starts from: the server's, the channel's, then their own."""
        scopes = self.layers(interaction.guild_id, scope_channel(interaction))
        return [*scopes, Layer(USER, self.store.user_defaults(interaction.user.id))]

    @property
    def catalog(self) -> Catalog:
        return Catalog(self.registry, self.networks, self.settings.default_model)

    async def resolve(self, request: Request, limits: Limits) -> Resolved:
        """The request's params and notes (`engine.request.resolve`), worked out on the edge threads: it parses
        prompts and pasted blocks and reads LoRA and model headers."""
        return await self.offload(resolve_request, request, self.catalog, limits)

    def nsfw_policy(self, guild_id: int | None) -> Policy:
        """A server's NSFW policy (what its admins chose, else the config's); DMs follow the config."""
        stored = {} if guild_id is None else self.store.nsfw_policy(guild_id)
        return Policy.from_stored(stored, cast("Outside", self.settings.nsfw_outside))

    def content_policy(
        self, interaction: discord.Interaction[EaselBot], params: GenerationParams
    ) -> tuple[bool, str | None]:
        """What may be drawn where, for every job a member asks for (the runner calls it before queueing): DMs
        as the config allows, a prompt with a listed word as the server's NSFW policy says for this channel."""
        in_dm = interaction.guild_id is None
        if in_dm and not self.settings.allow_dms:
            raise InvalidParamsError("This bot draws on servers only, not in DMs: use /imagine in a server channel.")
        policy = self.nsfw_policy(interaction.guild_id)
        channel = interaction.channel
        age_restricted = isinstance(channel, discord.TextChannel | discord.Thread) and channel.is_nsfw()
        decision, found = decide(params.prompt, policy, age_restricted=age_restricted)
        if decision == "refuse":
            raise InvalidParamsError(refusal(found, in_dm=in_dm, age_restricted_allowed=policy.in_age_restricted))
        if decision == "spoiler":
            return True, "Posted behind a spoiler: the prompt has words this server marks as NSFW."
        return False, None

    def rating_policy(self, guild_id: int | None, channel_id: int | None, rating: str) -> Outside:
        """What happens here to a `/describe` result the tagger rated `rating` (the server's NSFW policy)."""
        channel = self.get_channel(channel_id) if channel_id is not None else None
        age_restricted = isinstance(channel, discord.TextChannel | discord.Thread) and channel.is_nsfw()
        return decide_rating(rating, self.nsfw_policy(guild_id), age_restricted=age_restricted)

    def ceilings(self, guild_id: int | None, channel_id: int | None) -> Ceilings:
        """The limits in force in a channel: the config's, lowered by the server's and the channel's ceilings."""
        return ceilings(self.limits, self.settings.max_queued_per_user, self.layers(guild_id, channel_id))

    def ceilings_here(self, interaction: discord.Interaction[EaselBot]) -> Ceilings:
        return self.ceilings(interaction.guild_id, scope_channel(interaction))

    async def offload(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Run CPU-bound edge work (parsing, file checks, hashing) on the bot's own threads, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._edge, functools.partial(fn, *args, **kwargs))

    async def setup_hook(self) -> None:
        self.downloads = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        for extension in self.extensions_to_load:
            try:
                await self.load_extension(extension)
            except commands.ExtensionError:
                log.exception("could not load the %s commands; the others run without them", extension)
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        # What the previous process left open, read before any command can reach this one: a job a member asks
        # for while this process starts is this process's own, never one to resume (nor to refuse as a duplicate).
        left_open = self.store.open_jobs()
        self.runner.start()
        await self.sync_commands(force=self.force_sync)
        self.resume_task = asyncio.create_task(self._resume_when_ready(left_open), name="easel-resume")

    def _sync_scope(self) -> tuple[discord.Object | None, str]:
        if self.settings.dev_guild_id is None:
            return None, "global"
        return discord.Object(id=self.settings.dev_guild_id), f"guild:{self.settings.dev_guild_id}"

    def command_signature(self) -> str:
        """A digest of the slash commands as they would be synced (what Discord holds, if nothing changed)."""
        guild, _ = self._sync_scope()
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        payload = [command.to_dict(self.tree) for command in self.tree.get_commands(guild=guild)]
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    async def sync_commands(self, *, force: bool) -> int | None:
        """Sync the slash commands to Discord when forced (the start-up flag, `/admin sync`) or when they differ
        from the last sync recorded in the store (a first start, an upgrade); returns how many, None if skipped.

        Syncing on every start would spend Discord's daily command-update budget for nothing.
        """
        guild, scope = self._sync_scope()
        signature = self.command_signature()
        if not force and self.store.synced_commands(scope) == signature:
            log.info("slash commands unchanged since the last sync (%s); not syncing", scope)
            return None
        synced = await self.tree.sync(guild=guild)
        self.store.set_synced_commands(scope, signature)
        log.info("synced %d command(s) (%s)", len(synced), scope)
        return len(synced)

    async def _resume_when_ready(self, left_open: list[JobRecord]) -> None:
        """Jobs left open by the previous process are queued again once the gateway is up (they post to
        channels, which needs a connected client)."""
        await self.wait_until_ready()
        await resume_open_jobs(self, left_open)

    async def on_ready(self) -> None:
        log.info("connected as %s (%s) in %d guild(s)", self.user, self.user and self.user.id, len(self.guilds))

    async def close(self) -> None:
        if self.resume_task is not None:
            self.resume_task.cancel()
            await asyncio.gather(self.resume_task, return_exceptions=True)
        await self.runner.close()
        if self.downloads is not None:
            await self.downloads.close()
        self._edge.shutdown(wait=False, cancel_futures=True)
        await super().close()


def point_at(api_url: str, gateway_url: str) -> None:
    """Send REST and gateway traffic to the given endpoints (a REST proxy in production, a stand-in in tests).

    discord.py keeps both as class attributes, so this is process-wide: the composition root calls it once.
    """
    discord.http.Route.BASE = api_url.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
