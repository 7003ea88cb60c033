"""The waiting room both executors share: the jobs waiting for a device, in fair order between users, with model
affinity and batching, written once. Clock-free and lock-free: the in-process executor holds it under its lock, the
remote pool on the event loop; the policy itself is `engine.queue_policy`'s.

A job is booked (at the back of its user's line), taken with its batch by a device that can run it, put back at its
old place (`requeue`) when that device is lost, or dropped (cancelled)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from engine.jobs import Job
from engine.plan import GenerationPlan
from engine.queue_policy import fair_order, pick_batch, pick_job


class Waiter(Protocol):
    """What the room needs of an executor's entry: the job, its plan, and the place it was booked at."""

    @property
    def job(self) -> Job: ...
    @property
    def plan(self) -> GenerationPlan: ...
    @property
    def seq(self) -> int: ...


W = TypeVar("W", bound=Waiter)


@dataclass(frozen=True)
class Pick(Generic[W]):
    """What a device would take next: the job, its place in the fair order of all waiting jobs (0 = first), and
    the waiting jobs that device can run, in fair order (whom it would pass over, and who may join its batch)."""

    entry: W
    rank: int
    runnable: tuple[int, ...]


class WaitingRoom(Generic[W]):
    def __init__(self) -> None:
        self._waiting: dict[int, W] = {}  # by seq
        self._passed_over: dict[int, int] = {}
        self._last_served: dict[str, int] = {}
        self._served = itertools.count(1)
        self._seqs = itertools.count()

    def next_seq(self) -> int:
        """The place of a job booked now: behind everything booked before it."""
        return next(self._seqs)

    def book(self, entry: W) -> None:
        """Wait at `entry.seq` (a new job's `next_seq()`, or a job's old place when it comes back)."""
        self._waiting[entry.seq] = entry

    requeue = book  # a job whose device was lost goes back to its old place: ahead of what came later

    def drop(self, entry: W) -> bool:
        """Leave the room (cancelled, or ended elsewhere); whether it was waiting."""
        self._passed_over.pop(entry.seq, None)
        return self._waiting.pop(entry.seq, None) is not None

    def __contains__(self, entry: W) -> bool:
        return entry.seq in self._waiting and self._waiting[entry.seq] is entry

    def __len__(self) -> int:
        return len(self._waiting)

    def __iter__(self) -> Iterator[W]:
        return iter(self.order())

    def order(self) -> list[W]:
        """The waiting jobs in fair order: round-robin between users, least recently served first."""
        seqs = fair_order([(e.job.user_id, seq) for seq, e in self._waiting.items()], self._last_served)
        return [self._waiting[seq] for seq in seqs]

    def position(self, entry: W) -> int | None:
        """1-based place in the fair order; None when not waiting."""
        if entry not in self:
            return None
        return [e.seq for e in self.order()].index(entry.seq) + 1

    def pick(self, loaded: Collection[str], can_run: Callable[[W], bool] | None = None) -> Pick[W] | None:
        """What a device holding the `loaded` models (and able to run the jobs `can_run` allows) would take next:
        from the fair order, a job of a loaded model within the affinity window, unless one has waited too long;
        None when it can run none of the waiting jobs."""
        order = [e.seq for e in self.order()]
        runnable = [seq for seq in order if can_run is None or can_run(self._waiting[seq])]
        if not runnable:
            return None
        model_of = {seq: self._waiting[seq].job.params.model for seq in runnable}
        seq = pick_job(runnable, model_of, loaded, self._passed_over)
        return Pick(self._waiting[seq], order.index(seq), tuple(runnable))

    def take(self, pick: Pick[W], max_images: int) -> list[W]:
        """Take the picked job and the compatible waiting jobs that share its batch (up to `max_images` images):
        they leave the room, each job passed over for them counts it, and their users count as served."""
        head = pick.entry.seq
        for ahead in pick.runnable[: pick.runnable.index(head)]:
            self._passed_over[ahead] = self._passed_over.get(ahead, 0) + 1
        seqs = pick_batch(
            pick.runnable,
            head,
            {s: self._waiting[s].plan.batch_key() for s in pick.runnable},
            {s: self._waiting[s].job.params.batch_size for s in pick.runnable},
            max_images,
        )
        taken = []
        for seq in seqs:
            self._passed_over.pop(seq, None)
            entry = self._waiting.pop(seq)
            self._last_served[entry.job.user_id] = next(self._served)  # a ride in a batch is a turn served
            taken.append(entry)
        return taken
