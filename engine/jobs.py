"""Jobs, their results and events, and the `Executor` protocol the transport talks to.

Everything here is plain, serialisable data so that a remote worker pool (e.g. over Redis) can later stand in for
the in-process `GpuExecutor` without the Discord layer noticing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from engine.errors import EaselError
from engine.params import GenerationParams
from engine.taggers.description import Description


@dataclass(frozen=True)
class Job:
    """A queued unit of work: who asked, and the immutable params. No transport objects, ever."""

    job_id: str
    user_id: str
    params: GenerationParams
    max_queued: int | None = None  # the per-user cap where it was asked (a server or channel ceiling), if lower


@dataclass(frozen=True)
class GeneratedImage:
    """One finished image, already encoded (PNG with the A1111 `parameters` chunk)."""

    png: bytes
    seed: int
    infotext: str
    width: int
    height: int
    description: Description | None = None  # a `/describe` job's tags and ratings (the image is the one described)


@dataclass(frozen=True)
class JobResult:
    images: tuple[GeneratedImage, ...]
    infotext: str  # the first image's parameter text, as A1111 shows it for a batch
    seconds: float
    notes: tuple[str, ...] = ()  # what the user should know about the images (a detector that found nothing)


@dataclass(frozen=True)
class Queued:
    position: int  # 1 = next to run
    ahead: int  # jobs in front of this one, the running ones included
    eta_seconds: float | None = None  # expected seconds until this job is done; None until a job has finished
    waiting_for: str | None = None  # why it cannot start yet beyond the jobs ahead (no worker has its model)


@dataclass(frozen=True)
class Started:
    pass


@dataclass(frozen=True)
class Progress:
    """Steps done of `total`; `preview`, when set, is a small JPEG (<= 256 px) of the current denoised estimate."""

    step: int
    total: int
    preview: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Finished:
    result: JobResult


@dataclass(frozen=True)
class Failed:
    error: EaselError


@dataclass(frozen=True)
class WasCancelled:
    pass


JobEvent = Queued | Started | Progress | Finished | Failed | WasCancelled
TERMINAL_EVENTS = (Finished, Failed, WasCancelled)


async def event_stream(events: asyncio.Queue[JobEvent]) -> AsyncIterator[JobEvent]:
    """A job's events as its executor queues them, ending with (and including) the terminal one."""
    while True:
        event = await events.get()
        yield event
        if isinstance(event, TERMINAL_EVENTS):
            return


@dataclass
class Ticket:
    """What `submit` hands back: the job and the stream of its events, ending with a terminal one."""

    job: Job
    events: AsyncIterator[JobEvent] = field(repr=False)


class Executor(Protocol):
    """Runs jobs somewhere: the in-process GPU workers (`engine.executor.GpuExecutor`) or GPU workers on other
    machines through Redis (`engine.remote.pool.RemotePool`)."""

    async def submit(self, job: Job) -> Ticket:
        """Queue a job, or raise QueueFullError/InvalidParamsError at once; never blocks on the GPU."""
        ...

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; False if it is unknown or already finished."""
        ...

    def position(self, job_id: str) -> int | None:
        """1-based place in the queue, 0 while running, None when unknown or finished."""
        ...

    async def start(self) -> None:
        """Start the worker threads, or learn the remote workers (and their models); `submit` starts it too."""
        ...

    def loaded_models(self) -> list[str]:
        """The models in memory now (on any device or worker), for `/about`."""
        ...

    def worker_lines(self) -> list[str] | None:
        """One line per GPU worker on another machine, for `/about`; None where the jobs run in this process."""
        ...

    async def close(self) -> None: ...
