"""Who may /show which job where, as a pure function."""

from __future__ import annotations

from bot.store import JobRecord, JobStatus
from commands.show import choice_label, refusal
from engine.params import GenerationParams

PARAMS = GenerationParams(prompt="a fox", model="builtin:tiny", seed=7)
OWNER, OTHER, GUILD = 1, 2, 10


def record(*, guild_id: int | None = GUILD, status: JobStatus = JobStatus.FINISHED) -> JobRecord:
    return JobRecord("abc123abc123", OWNER, guild_id, 3, PARAMS, status, 4, None, 0.0, 1.0)


def test_anyone_may_show_a_finished_job_in_the_server_it_was_made_in() -> None:
    assert refusal(record(), "abc123abc123", user_id=OTHER, guild_id=GUILD) is None


def test_a_job_from_another_server_is_refused_even_to_its_owner() -> None:
    assert "not made in this server" in str(refusal(record(), "x", user_id=OWNER, guild_id=GUILD + 1))
    assert "not made in this server" in str(refusal(record(guild_id=None), "x", user_id=OWNER, guild_id=GUILD))


def test_in_dms_only_your_own_jobs() -> None:
    assert refusal(record(), "x", user_id=OWNER, guild_id=None) is None
    assert "only your own" in str(refusal(record(guild_id=None), "x", user_id=OTHER, guild_id=None))


def test_unknown_ids_are_named_safely() -> None:
    assert "There is no job `a'b`" in str(refusal(None, "a`b", user_id=OWNER, guild_id=GUILD))


def test_only_finished_jobs_are_shown() -> None:
    said = {s: refusal(record(status=s), "x", user_id=OWNER, guild_id=GUILD) for s in JobStatus}
    assert said[JobStatus.FINISHED] is None
    assert "not finished yet" in str(said[JobStatus.RUNNING]) and "deleted" in str(said[JobStatus.DELETED])
    assert "did not finish (failed)" in str(said[JobStatus.FAILED])


def test_choice_labels_fit_discords_100_characters() -> None:
    long = JobRecord("abc123abc123", OWNER, GUILD, 3, GenerationParams(prompt="x " * 200, model="m", seed=1),
                     JobStatus.FINISHED, 4, None, 0.0, 1.0)  # fmt: skip
    assert len(choice_label(long)) == 100 and choice_label(record()) == "abc123abc123 · a fox"
