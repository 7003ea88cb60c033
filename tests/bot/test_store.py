"""The SQLite job store: jobs round-trip their params, and state survives reopening (a restart)."""

from __future__ import annotations

from pathlib import Path

from bot.store import JobStatus, JobStore
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


def test_open_jobs_of_a_previous_run_are_marked_interrupted(tmp_path: Path) -> None:
    store = JobStore.open(tmp_path)
    store.add_job("a", user_id=1, guild_id=None, channel_id=None, params=PARAMS)
    store.add_job("b", user_id=1, guild_id=None, channel_id=None, params=PARAMS)
    store.set_status("b", JobStatus.FINISHED)
    assert store.interrupt_open_jobs() == 1
    record = store.get_job("a")
    assert record is not None and record.status is JobStatus.INTERRUPTED


def test_guild_default_model_is_stored_per_guild(tmp_path: Path) -> None:
    store = JobStore.open(tmp_path)
    assert store.guild_default_model(1) is None
    store.set_guild_default_model(1, "anime-v3")
    store.set_guild_default_model(1, "photo-xl")
    assert (store.guild_default_model(1), store.guild_default_model(2)) == ("photo-xl", None)
