"""`python main.py` as its own process, pointed at a Discord stand-in: what an owner runs, killed as a crash kills."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def start_main(
    tmp_path: Path, api_url: str, gateway_url: str, *, log: Path | None = None, **settings: str
) -> asyncio.subprocess.Process:
    """`python main.py` with a token, pointed at the given Discord endpoints, in a clean EASEL_ environment; its data
    and models live under `tmp_path`. Its output is piped, or appended to `log` (a pipe nobody reads fills up)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EASEL_")}
    env.update(
        HF_HUB_OFFLINE="1",
        EASEL_DISCORD_TOKEN="not-a-real-token",
        EASEL_DISCORD_API_URL=api_url,
        EASEL_DISCORD_GATEWAY_URL=gateway_url,
        EASEL_DATA_DIR=str(tmp_path / "data"),
        EASEL_MODELS_DIR=str(tmp_path / "models"),
        **settings,
    )
    if log is None:
        return await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "main.py"), cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
    with log.open("ab") as output:
        return await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "main.py"), cwd=tmp_path, env=env, stdout=output, stderr=output
        )
