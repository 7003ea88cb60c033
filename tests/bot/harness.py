"""Runs a real EaselBot against the stand-in: start, restart (same data dir), stop; plus the test users."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from bot.client import EXTENSIONS, EaselBot, point_at
from bot.ports import ModelCatalog, NetworkCatalog
from bot.store import JobStore
from config.settings import Settings
from engine.blobs import BlobStore
from engine.jobs import Executor
from engine.params import Limits
from tests.bot.standin import (
    ADMIN_ROLE_ID,
    ADMINISTRATOR,
    EVERYONE_PERMISSIONS,
    GUILD_ID,
    InteractionHandle,
    Standin,
    StandinUser,
)
from tests.fakes import FakeNetworks

ALICE = StandinUser(2000000000000000001, "alice")
BOB = StandinUser(2000000000000000002, "bob")
LISTED_ADMIN = StandinUser(2000000000000000003, "listed-admin")
ROLE_ADMIN = StandinUser(2000000000000000004, "role-admin", roles=(ADMIN_ROLE_ID,))
SERVER_ADMIN = StandinUser(2000000000000000005, "server-admin", permissions=EVERYONE_PERMISSIONS | ADMINISTRATOR)


def make_settings(standin: Standin, data_dir: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        discord_api_url=standin.api_url,
        discord_gateway_url=standin.gateway_url,
        dev_guild_id=GUILD_ID,
        admin_user_ids=[LISTED_ADMIN.id],
        admin_role_ids=[ADMIN_ROLE_ID],
        data_dir=data_dir,
        default_model="builtin:tiny",
        max_batch=4,
    )


# The tasks discord.py runs a command, button or modal handler in: a handler may go on after its callback (an
# attachment download after a defer), and a test must see everything it sent.
_HANDLER_TASKS = (
    "CommandTree-invoker",
    "discord-ui-view-dispatch-",
    "discord-ui-modal-dispatch-",
    "discord-ui-dynamic-item-",
)


async def _handlers_done() -> None:
    current = asyncio.current_task()
    while pending := [
        t for t in asyncio.all_tasks() if t is not current and not t.done() and t.get_name().startswith(_HANDLER_TASKS)
    ]:
        await asyncio.gather(*pending, return_exceptions=True)


@dataclass
class Harness:
    standin: Standin
    settings: Settings
    executor: Executor
    registry: ModelCatalog
    networks: NetworkCatalog = field(default_factory=FakeNetworks)
    token_lifetime: timedelta = timedelta(minutes=14)
    edit_interval: float = 0.0
    sync_commands: bool = False
    extensions: tuple[str, ...] = EXTENSIONS
    bot: EaselBot | None = None
    store: JobStore | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    async def start(self) -> EaselBot:
        self.store = JobStore.open(self.settings.data_dir)
        point_at(self.settings.discord_api_url, self.settings.discord_gateway_url)
        settings = self.settings
        self.bot = EaselBot(
            settings,
            self.executor,
            self.registry,
            self.store,
            networks=self.networks,
            limits=Limits(
                max_steps=settings.max_steps,
                max_pixels=settings.max_pixels,
                max_batch=settings.max_batch,
                default_rng=settings.rng,
            ),
            blobs=BlobStore(settings.data_dir / "blobs"),
            sync_commands=self.sync_commands,
            extensions=self.extensions,
            guild_ready_timeout=0.01,
            edit_interval=self.edit_interval,
            token_lifetime=self.token_lifetime,
        )
        self._task = asyncio.create_task(self.bot.start("standin-token"))
        ready = asyncio.create_task(self.bot.wait_until_ready())
        await asyncio.wait({ready, self._task}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            ready.cancel()
            self._task.result()  # raises the start-up error
        assert ready.done(), "bot did not become ready"
        return self.bot

    async def stop(self) -> None:
        if self.bot is not None:
            await self.bot.close()
        if self._task is not None:
            await self._task
        if self.store is not None:
            self.store.close()
        self.bot = self.store = self._task = None

    async def restart(self) -> EaselBot:
        await self.stop()
        return await self.start()

    async def settle(self, handle: InteractionHandle | None = None) -> None:
        """Wait for the bot's answer to `handle`, then until every job it follows has sent its last message."""
        assert self.bot is not None
        if handle is not None:
            await self.standin.callback(handle)
        await _handlers_done()
        if self.bot.resume_task is not None:
            await self.bot.resume_task
        await self.bot.runner.wait_idle()
