"""Waiting for a condition instead of sleeping a fixed time: fast when it holds soon, bounded when it never does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def wait_until(condition: Callable[[], bool], *, limit_s: float = 30.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_s:g} s waiting for {what}")
        await asyncio.sleep(0.002)


async def wait_until_async(
    condition: Callable[[], Awaitable[bool]], *, limit_s: float = 30.0, what: str = "the condition"
) -> None:
    """As `wait_until`, for a condition that must be asked for (a Redis stream's length...)."""
    deadline = time.monotonic() + limit_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_s:g} s waiting for {what}")
        await asyncio.sleep(0.01)
