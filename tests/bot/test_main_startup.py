"""`python main.py` with a token: the real composition root connects to a Discord stand-in and syncs its commands."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.bot.process import start_main
from tests.bot.standin import Recorded, Standin

pytestmark = pytest.mark.slow  # each test starts Easel as a process


async def test_main_starts_the_bot_and_syncs_commands_to_the_dev_guild(standin: Standin, tmp_path: Path) -> None:
    process = await start_main(tmp_path, standin.api_url, standin.gateway_url, EASEL_DEV_GUILD_ID="111111111111111111")
    try:

        def is_guild_sync(r: Recorded) -> bool:
            return r.method == "PUT" and r.path.endswith("/guilds/111111111111111111/commands")

        [sync] = await standin.wait_for(is_guild_sync, limit_s=60)
        names = {command["name"] for command in sync.json}
        assert {"imagine", "model", "settings"} <= names
        assert (tmp_path / "data" / "easel.sqlite3").exists()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()
    stderr = (await process.stderr.read()).decode() if process.stderr else ""
    assert "not-a-real-token" not in stderr  # the token is never logged
    assert "Traceback" not in stderr, stderr  # Ctrl-C is a clean shutdown


async def test_an_unreachable_discord_is_one_clear_line(tmp_path: Path) -> None:
    # The discard port: nothing listens there.
    process = await start_main(tmp_path, "http://127.0.0.1:9/api/v10", "ws://127.0.0.1:9/gateway")
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert "could not connect to Discord" in stderr.decode()
    assert "Traceback" not in stderr.decode() and "not-a-real-token" not in stderr.decode()
