"""The waiting room both executors share: fair turns between users, model affinity with a bound on passes,
batches of compatible jobs, and a lost device's jobs going back to their old places."""

from __future__ import annotations

from dataclasses import dataclass

from engine.jobs import Job
from engine.plan import GenerationPlan, make_plan
from engine.waiting import WaitingRoom
from tests.engine.conftest import tiny_params


@dataclass
class Entry:
    job: Job
    plan: GenerationPlan
    seq: int


def booked(room: WaitingRoom[Entry], job_id: str, user: str, **changes: object) -> Entry:
    params = tiny_params(prompt=job_id, **changes)
    entry = Entry(Job(job_id, user, params), make_plan(params), room.next_seq())
    room.book(entry)
    return entry


def ids(entries: list[Entry]) -> list[str]:
    return [e.job.job_id for e in entries]


def test_users_take_turns_whoever_queued_first() -> None:
    room: WaitingRoom[Entry] = WaitingRoom()
    for job_id in ("a1", "a2", "a3"):
        booked(room, job_id, "alice")
    booked(room, "b1", "bob")
    assert ids(room.order()) == ["a1", "b1", "a2", "a3"]
    first = room.pick(loaded=[])
    assert first is not None and ids(room.take(first, 1)) == ["a1"]
    assert ids(room.order()) == ["b1", "a2", "a3"]  # alice was served: bob's turn


def test_a_device_takes_a_job_of_a_model_it_holds_but_not_past_three_passes() -> None:
    room: WaitingRoom[Entry] = WaitingRoom()
    head = booked(room, "old", "u1", model="other")
    for n in range(5):
        booked(room, f"mine{n}", f"u{n + 2}")
    taken = []
    for _ in range(4):
        pick = room.pick(loaded=["builtin:tiny"])
        assert pick is not None
        taken += ids(room.take(pick, 1))
    assert taken == ["mine0", "mine1", "mine2", "old"]  # passed over three times, then it runs
    assert room.position(head) is None


def test_a_device_takes_only_what_it_can_run_and_says_where_the_pick_stands() -> None:
    room: WaitingRoom[Entry] = WaitingRoom()
    booked(room, "x", "u1", model="other")
    booked(room, "y", "u2")
    pick = room.pick(loaded=[], can_run=lambda e: e.job.params.model == "builtin:tiny")
    assert pick is not None and (pick.entry.job.job_id, pick.rank) == ("y", 1)
    assert room.pick(loaded=[], can_run=lambda e: False) is None


def test_compatible_jobs_share_a_batch_up_to_its_images() -> None:
    room: WaitingRoom[Entry] = WaitingRoom()
    booked(room, "j1", "u1")
    booked(room, "j2", "u2", batch_size=2)
    booked(room, "odd", "u3", steps=9)  # another step count: never in the same batch
    booked(room, "j3", "u4")
    pick = room.pick(loaded=[])
    assert pick is not None and ids(room.take(pick, 4)) == ["j1", "j2", "j3"]
    assert ids(room.order()) == ["odd"]


def test_a_job_whose_device_was_lost_goes_back_to_its_old_place_and_a_dropped_one_leaves() -> None:
    room: WaitingRoom[Entry] = WaitingRoom()
    first = booked(room, "first", "u1")
    pick = room.pick(loaded=[])
    assert pick is not None and room.take(pick, 1) == [first]
    later = booked(room, "later", "u2")
    room.requeue(first)
    assert ids(room.order()) == ["later", "first"]  # u1 was served last: u2's turn first, first keeps its place
    assert room.position(first) == 2 and room.drop(later) and not room.drop(later)
    assert ids(room.order()) == ["first"]
