"""The discord.py client: cogs, buttons, the job runner and the error handler, put together by `build_bot`."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.buttons import DYNAMIC_ITEMS
from bot.errors import handle_error
from bot.ports import ModelCatalog, NetworkCatalog
from bot.resume import resume_open_jobs
from bot.runner import EDIT_INTERVAL, TOKEN_LIFETIME, JobRunner
from bot.store import JobStore
from config.settings import Settings
from engine.blobs import BlobStore
from engine.jobs import Executor
from engine.params import Limits

log = logging.getLogger(__name__)


class EaselTree(app_commands.CommandTree["EaselBot"]):
    async def on_error(self, interaction: discord.Interaction[EaselBot], error: app_commands.AppCommandError) -> None:
        await handle_error(interaction, error)


class EaselBot(commands.Bot):
    """Holds plain collaborators (settings, executor, registry, networks, store); Discord objects never reach them."""

    def __init__(
        self,
        settings: Settings,
        executor: Executor,
        registry: ModelCatalog,
        store: JobStore,
        *,
        networks: NetworkCatalog,
        guild_ready_timeout: float = 2.0,
        edit_interval: float = EDIT_INTERVAL,
        token_lifetime: timedelta = TOKEN_LIFETIME,
    ) -> None:
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
        self.limits = Limits(
            max_steps=settings.max_steps,
            max_pixels=settings.max_pixels,
            max_batch=min(settings.max_batch, render.MAX_FILES),
            default_rng=settings.rng,
        )
        self.runner = JobRunner(executor, store, edit_interval=edit_interval, token_lifetime=token_lifetime)
        self.blobs = BlobStore(settings.data_dir / "blobs")  # the folder the engine reads init images from
        self.resume_task: asyncio.Task[None] | None = None
        self.downloads: aiohttp.ClientSession | None = None  # for attachments; opened in setup_hook

    async def setup_hook(self) -> None:
        self.downloads = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        from commands.imagine import ImagineCog
        from commands.info import InfoCog
        from commands.loras import LorasCog
        from commands.models import ModelsCog
        from commands.settings import SettingsCog
        from commands.show import ShowCog

        await self.add_cog(ImagineCog(self))
        await self.add_cog(LorasCog(self))
        await self.add_cog(ModelsCog(self))
        await self.add_cog(SettingsCog(self))
        await self.add_cog(InfoCog(self))
        await self.add_cog(ShowCog(self))
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        if self.settings.dev_guild_id is not None:
            guild = discord.Object(id=self.settings.dev_guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d command(s) to dev guild %s", len(synced), guild.id)
        else:
            synced = await self.tree.sync()
            log.info("synced %d global command(s)", len(synced))
        self.resume_task = asyncio.create_task(self._resume_when_ready(), name="easel-resume")

    async def _resume_when_ready(self) -> None:
        """Jobs left open by the previous process are queued again once the gateway is up (they post to
        channels, which needs a connected client)."""
        await self.wait_until_ready()
        await resume_open_jobs(self)

    async def on_ready(self) -> None:
        log.info("connected as %s (%s) in %d guild(s)", self.user, self.user and self.user.id, len(self.guilds))

    async def close(self) -> None:
        if self.resume_task is not None:
            self.resume_task.cancel()
            await asyncio.gather(self.resume_task, return_exceptions=True)
        await self.runner.close()
        if self.downloads is not None:
            await self.downloads.close()
        await super().close()


def point_at(api_url: str, gateway_url: str) -> None:
    """Send REST and gateway traffic to the given endpoints (a REST proxy in production, a stand-in in tests).

    discord.py keeps both as class attributes, so this is process-wide.
    """
    discord.http.Route.BASE = api_url.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def build_bot(
    settings: Settings,
    executor: Executor,
    registry: ModelCatalog,
    store: JobStore,
    *,
    networks: NetworkCatalog,
    guild_ready_timeout: float = 2.0,
    edit_interval: float = EDIT_INTERVAL,
    token_lifetime: timedelta = TOKEN_LIFETIME,
) -> EaselBot:
    """Build the bot; run it with `await bot.start(token)`. The caller owns the executor's and store's life.

    The keyword arguments exist for tests, which shorten them.
    """
    point_at(settings.discord_api_url, settings.discord_gateway_url)
    return EaselBot(
        settings,
        executor,
        registry,
        store,
        networks=networks,
        guild_ready_timeout=guild_ready_timeout,
        edit_interval=edit_interval,
        token_lifetime=token_lifetime,
    )
