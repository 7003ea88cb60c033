"""The SQLite job store: jobs round-trip their params, and state survives reopening (a restart)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.store import DB_NAME, JobStatus, JobStore
from engine.errors import StorageFullError
from engine.params import GenerationParams

PARAMS = GenerationParams(prompt="a fox", model="builtin:tiny", seed=2**64 - 1, subseed=3, subseed_strength=0.15)


def test_a_job_round_trips_through_a_reopened_store(tmp_path: Path) -> None:
    store = JobStore.open(tmp_path)
    store.add_job("abc123", user_id=1, guild_id=2, channel_id=3, params=PARAMS)
    store.set_status("abc123", JobStatus.FINISHED)
    store.set_message("abc123", 99)
    store.close()
    record = JobStore.open(tmp_path).get_job("abc123")
    assert record is not None
    assert (record.user_id, record.guild_id, record.channel_id, record.message_id) == (1, 2, 3, 99)
    assert record.params == PARAMS and record.status is JobStatus.FINISHED and record.finished_at is not None


def test_unknown_job_is_none(tmp_path: Path) -> None:
    assert JobStore.open(tmp_path).get_job("nope") is None


def test_open_jobs_come_back_in_queue_order_and_count_their_resumes(tmp_path: Path) -> None:
    store = JobStore.open(tmp_path)
    for job_id in ("a", "b", "c"):
        store.add_job(job_id, user_id=1, guild_id=None, channel_id=None, params=PARAMS)
    store.set_status("a", JobStatus.RUNNING)
    store.set_status("b", JobStatus.FINISHED)
    store.close()
    store = JobStore.open(tmp_path)
    assert [r.job_id for r in store.open_jobs()] == ["a", "c"]
    store.mark_resumed("a", cut_short=True)  # it was running when the process died
    store.mark_resumed("c", cut_short=False)  # it was only waiting: no strike against it
    assert [(r.job_id, r.status, r.resumes) for r in store.open_jobs()] == [
        ("a", JobStatus.QUEUED, 1),
        ("c", JobStatus.QUEUED, 0),
    ]


def test_a_store_from_before_resumes_and_spoilers_gains_the_columns(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute(
        "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, guild_id TEXT, channel_id TEXT,"
        " params TEXT NOT NULL, status TEXT NOT NULL, message_id TEXT, error TEXT, created_at REAL NOT NULL,"
        " finished_at REAL)"
    )
    db.close()
    store = JobStore.open(tmp_path)
    store.add_job("a", user_id=1, guild_id=None, channel_id=None, params=PARAMS)
    store.add_job("b", user_id=1, guild_id=None, channel_id=None, params=PARAMS, spoiler=True)
    assert [(r.resumes, r.spoiler) for r in store.open_jobs()] == [(0, False), (0, True)]


def test_user_defaults_are_stored_per_user_and_cleared_when_empty(tmp_path: Path) -> None:
    store = JobStore.open(tmp_path)
    store.set_user_defaults(1, {"steps": 30, "sampler": "Euler a"})
    assert (store.user_defaults(1), store.user_defaults(2)) == ({"steps": 30, "sampler": "Euler a"}, {})
    store.set_user_defaults(1, {})
    assert store.user_defaults(1) == {}


def test_guild_default_model_is_stored_per_guild(tmp_path: Path) -> None:
    store = JobStore.open(tmp_path)
    assert store.guild_default_model(1) is None
    store.set_guild_default_model(1, "anime-v3")
    store.set_guild_default_model(1, "photo-xl")
    assert (store.guild_default_model(1), store.guild_default_model(2)) == ("photo-xl", None)


def test_a_users_open_and_recent_jobs_are_their_own_in_order(tmp_path: Path) -> None:
    store = JobStore.open(tmp_path)
    for job_id, user in (("a1", 1), ("a2", 1), ("b1", 2), ("a3", 1)):
        store.add_job(job_id, user_id=user, guild_id=2, channel_id=3, params=PARAMS)
    store.set_status("a1", JobStatus.FINISHED)
    store.set_status("b1", JobStatus.FINISHED)
    store.set_status("a3", JobStatus.FAILED)
    assert [r.job_id for r in store.user_open_jobs(1)] == ["a2"]
    assert [r.job_id for r in store.user_recent_jobs(1, limit=10)] == ["a3", "a1"]
    assert [r.job_id for r in store.user_recent_jobs(1, limit=1)] == ["a3"]
    assert [r.job_id for r in store.user_recent_jobs(1, limit=10, statuses=(JobStatus.FINISHED,))] == ["a1"]


def fill(store: JobStore) -> None:
    """Make the store's disk full for real: SQLite's own page limit at what the file has, every page used up."""
    db = store._db
    db.execute("CREATE TABLE IF NOT EXISTS filler (data TEXT)")
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    for size in (2000, 200, 20, 1):
        while True:
            try:
                db.execute("INSERT INTO filler VALUES (?)", ("x" * size,))
            except sqlite3.OperationalError:
                break


def test_a_full_disk_refuses_a_write_and_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    store = JobStore.open(tmp_path)
    store.add_job("kept", user_id=1, guild_id=2, channel_id=3, params=PARAMS)
    store.set_status("kept", JobStatus.RUNNING)
    fill(store)
    with pytest.raises(StorageFullError, match="disk is full"):
        store.add_job("lost", user_id=1, guild_id=2, channel_id=3, params=PARAMS.replace(prompt="x" * 3000))
    with pytest.raises(StorageFullError):
        store.set_status("kept", JobStatus.FAILED, error="y" * 5000)
    with pytest.raises(StorageFullError):
        store.set_user_defaults(1, {"negative_prompt": "z" * 5000})
    assert store.get_job("lost") is None
    record = store.get_job("kept")
    assert record is not None and record.status is JobStatus.RUNNING and record.error is None  # nothing half-done
    assert store.user_defaults(1) == {}
    store._db.execute("PRAGMA max_page_count = 1000000")  # space again
    store.add_job("after", user_id=1, guild_id=2, channel_id=3, params=PARAMS)
    store.close()
    reopened = JobStore.open(tmp_path)
    assert reopened._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert [r.job_id for r in reopened.open_jobs()] == ["kept", "after"]
