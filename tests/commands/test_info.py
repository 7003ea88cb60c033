"""/info's reply as pure functions: lines, places in the queue, and Discord's embed cap."""

from __future__ import annotations

from bot.store import JobRecord, JobStatus
from commands.info import MAX_DESCRIPTION, RECENT, info_embed, message_link, place, recent_line
from engine.params import GenerationParams

PARAMS = GenerationParams(prompt="a fox", model="builtin:tiny", seed=7)


def record(job_id: str = "abc123abc123", *, status: JobStatus = JobStatus.FINISHED, **changes: object) -> JobRecord:
    fields: dict[str, object] = {
        "job_id": job_id,
        "user_id": 1,
        "guild_id": 2,
        "channel_id": 3,
        "params": PARAMS,
        "status": status,
        "message_id": 4,
        "error": None,
        "created_at": 1_700_000_000.0,
        "finished_at": 1_700_000_060.0,
    }
    fields.update(changes)
    return JobRecord(**fields)  # type: ignore[arg-type]


def test_places_read_as_running_queued_or_waiting() -> None:
    assert (place(0), place(2), place(None)) == ("🎨 running", "⏳ #2 in the queue", "waiting to be queued again")


def test_a_finished_job_links_to_its_message_and_a_dm_job_links_through_me() -> None:
    assert message_link(record()) == "https://discord.com/channels/2/3/4"
    assert message_link(record(guild_id=None)) == "https://discord.com/channels/@me/3/4"
    line = recent_line(record())
    assert "<t:1700000060:R>" in line and line.endswith("[result](https://discord.com/channels/2/3/4)")


def test_a_failed_job_has_no_result_link() -> None:
    line = recent_line(record(status=JobStatus.FAILED))
    assert "❌ failed" in line and "result" not in line


def test_prompts_are_cut_and_cannot_inject_markdown_or_links() -> None:
    params = GenerationParams(prompt="**[click](https://evil.example)** " + "x" * 200, model="m`odel", seed=7)
    line = recent_line(record(params=params))
    assert "\\*\\*\\[click\\]" in line and "x" * 60 not in line and "`m'odel`" in line


def test_the_description_stays_within_discords_cap_dropping_the_oldest_lines() -> None:
    long = GenerationParams(prompt="p " * 500, model="m" * 300, seed=2**64 - 1)
    recent = [record(f"{i:012x}", params=long, message_id=10**18 + i) for i in range(RECENT)]
    waiting = [(record(f"{i:012x}", params=long, status=JobStatus.QUEUED), i) for i in range(20)]
    embed = info_embed(waiting, recent, 20)
    assert embed.description is not None and len(embed.description) <= MAX_DESCRIPTION
    assert "20 of your 20 places in use" in embed.description
    assert len(embed) <= 6000


def test_about_lists_the_gpu_workers_of_a_remote_pool_and_says_when_none_is_connected() -> None:
    from commands.help import about_text

    common = {"version": "1.0", "models": ["m"], "default": "m", "loaded": [], "source_url": None}
    assert "GPU workers" not in about_text(**common)  # type: ignore[arg-type]
    text = about_text(**common, workers=["`gpu-box` (cuda:0; 3 models; idle)"])  # type: ignore[arg-type]
    assert "GPU workers (1): `gpu-box` (cuda:0; 3 models; idle)." in text
    assert "none connected: jobs wait until one connects" in about_text(**common, workers=[])  # type: ignore[arg-type]
