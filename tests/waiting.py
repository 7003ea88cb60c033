"""Waiting for a condition instead of sleeping a fixed time: fast when it holds soon, bounded when it never does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def wait_until(condition: Callable[[], bool], *, limit_s: float = 5.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_s:g} s waiting for {what}")
        await asyncio.sleep(0.002)
