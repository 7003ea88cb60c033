"""Redis for remote workers, shared by the bot's pool and the workers: the keys, connecting, retrying through an
outage, and reading stream replies. The keys:

- `easel:hello`      workers' heartbeats (devices, models with hashes, loaded models, free memory, speed, jobs)
- `easel:jobs:W:B`   one stream per run B of worker W, group `worker`: the jobs the bot hands it, and cancels
- `easel:progress`   progress and previews (capped; a lost one costs nothing)
- `easel:results`    each job's last event, group `bot`: read, handled, then acknowledged
- `easel:running`    job -> the worker run holding it, so a restarted bot re-attaches instead of running it again
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

HELLO = "easel:hello"
RESULTS = "easel:results"
PROGRESS = "easel:progress"
RUNNING = "easel:running"
BOT_GROUP = "bot"
WORKER_GROUP = "worker"
TIMEOUT = 15.0  # seconds without a heartbeat (or an entry refresh) after which a worker's jobs go elsewhere
HELLO_MAXLEN = 500  # heartbeats kept (a newly started bot learns the workers from them)
PROGRESS_MAXLEN = 1000  # progress entries kept (previews <= 256 KiB each; the bot reads as they come)


def jobs_key(worker: str, boot: str) -> str:
    return f"easel:jobs:{worker}:{boot}"


def redis_errors() -> tuple[type[BaseException], ...]:
    """What a lost or restarting Redis raises: the loops retry on these."""
    from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

    return (ConnectionError, TimeoutError, BusyLoadingError, OSError)


def connect(url: str) -> Redis:
    """A client for `url` (redis://user:password@host:port/db, or rediss:// for TLS), bytes in and out."""
    from redis.asyncio import Redis

    return Redis.from_url(url, decode_responses=False, health_check_interval=10, socket_keepalive=True)


def safe_url(url: str) -> str:
    """The URL for a log line: without its password."""
    scheme, sep, rest = url.partition("://")
    auth, at, host = rest.rpartition("@")
    if not at:
        return url
    user = auth.partition(":")[0]
    return f"{scheme}{sep}{user + ':***' if user else '***'}@{host}"


async def retrying(
    what: str, step: Callable[[], Awaitable[object]], stop: asyncio.Event, *, once: bool = False
) -> None:
    """Run `step` until `stop` (`once`: until it succeeds); while Redis is away, wait (0.2 s doubling to 5 s) and
    go on, logging once."""
    delay, down = 0.2, False
    while not stop.is_set():
        try:
            await step()
            if down:
                log.info("%s: Redis is back", what)
            if once:
                return
            delay, down = 0.2, False
        except redis_errors() as err:
            if not down:
                log.warning("%s: Redis unreachable (%s); retrying", what, err)
            down = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 5.0)
        except Exception:  # a bug in one round must not end the loop for good (a worker would stop taking jobs)
            log.exception("%s: unexpected error; going on", what)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 5.0)


def stream_entries(reply: Any) -> list[tuple[bytes, dict[str, bytes]]]:
    """The entries of an XREAD/XREADGROUP reply over any streams (RESP2 lists or RESP3 maps), oldest first."""
    if not reply:
        return []
    per_stream = reply.values() if isinstance(reply, dict) else [entries for _, entries in reply]
    return [entry for entries in per_stream for entry in entry_list(entries)]


def entry_list(entries: Any) -> list[tuple[bytes, dict[str, bytes]]]:
    """Stream entries as (id, fields by name); an entry deleted meanwhile has no fields."""
    if entries and isinstance(entries[0], list) and len(entries[0]) == 1 and isinstance(entries[0][0], list):
        entries = entries[0]  # RESP3 wraps a stream's entries once more
    out = []
    for entry_id, fields in entries or []:
        named = {bytes(k).decode(errors="replace"): bytes(v) for k, v in (fields or {}).items()}
        out.append((bytes(entry_id), named))
    return out
