"""A crash loop: `python main.py` on `builtin:tiny`, killed with SIGKILL at random points (while starting, while a
job runs, while results are delivered) over 20 restarts of one queue of jobs. Every job is delivered exactly once:
none lost, none posted twice, none given up, and the store holds no open job at the end."""

from __future__ import annotations

import asyncio
import random
import re
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.bot.process import start_main
from tests.bot.standin import GUILD_ID, Recorded, Standin, StandinUser

pytestmark = pytest.mark.slow  # 21 starts of Easel as a process

PROMPT = re.compile(r"crash (\d+) job (\d+)")
USERS, JOBS_PER_USER, RESTARTS = 4, 3, 20  # 3 jobs each: the default per-user queue cap
# Bounds on waiting for a condition, not budgets: generous, so that a machine busy with other work still passes.
BOUND = 300


def delivered(standin: Standin) -> Counter[tuple[int, int]]:
    """Each job's result messages (its images, with the Done text) that exist now."""
    found: Counter[tuple[int, int]] = Counter()
    for message in standin.messages.values():
        if message["attachments"] and "Done" in message["content"]:
            match = PROMPT.search(message["content"])
            if match:
                found[(int(match[1]), int(match[2]))] += 1
    return found


async def until(condition: object, limit_s: float) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def stop(process: asyncio.subprocess.Process) -> None:
    """The clean stop a run ends with (Ctrl-C); one that does not stop in time is killed, and fails the test."""
    if process.returncode is None:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise


async def test_every_job_is_delivered_exactly_once_through_20_kills(standin: Standin, tmp_path: Path) -> None:
    rng = random.Random(20261203)
    log = tmp_path / "easel.log"
    settings = {"EASEL_DEV_GUILD_ID": str(GUILD_ID), "EASEL_PREVIEWS": "false"}

    def is_sync(r: Recorded) -> bool:
        return r.method == "PUT" and r.path.endswith(f"/guilds/{GUILD_ID}/commands")

    def identifies() -> int:
        return sum(1 for op in standin.gateway_log if op["op"] == 2)

    process = await start_main(tmp_path, standin.api_url, standin.gateway_url, log=log, **settings)
    kills: Counter[str] = Counter()
    try:
        await standin.wait_for(is_sync, limit_s=BOUND)
        people = [StandinUser(4000000000000000000 + u, f"crash{u}") for u in range(USERS)]
        handles = []
        for k in range(JOBS_PER_USER):  # steps and size so that a job takes a while: kills land inside them
            for u, person in enumerate(people):
                prompt = f"crash {u} job {k}"
                handles.append(
                    await standin.slash("imagine", person, prompt=prompt, steps=12, width=128, height=128, seed=str(k))
                )
        await standin.wait_for(lambda r: r.path.endswith("/callback"), count=len(handles), limit_s=BOUND)
        for restart in range(RESTARTS):
            started = identifies() if restart > 0 else 0  # the first process has connected already
            if restart > 0:
                process = await start_main(tmp_path, standin.api_url, standin.gateway_url, log=log, **settings)
            # One to six seconds after each start (as an unlucky host does): while it starts, mid-job, between
            # jobs, while a result is posted. The jobs running at these kills did nothing wrong.
            await asyncio.sleep(rng.uniform(1.0, 6.0))
            kills["connected" if identifies() > started else "starting"] += 1
            process.kill()
            await process.wait()
        process = await start_main(tmp_path, standin.api_url, standin.gateway_url, log=log, **settings)
        expected = {(u, k) for u in range(USERS) for k in range(JOBS_PER_USER)}
        done = await until(lambda: set(delivered(standin)) >= expected, 4 * BOUND)
        await asyncio.sleep(1.0)  # anything posted twice would come now
    finally:
        await stop(process)
    output = log.read_text(errors="replace")
    counts = delivered(standin)
    assert done, (counts, output[-4000:])
    assert {key: n for key, n in counts.items() if n != 1} == {}, counts  # nothing posted twice
    assert sum(kills.values()) == RESTARTS and kills["starting"] and kills["connected"]
    assert not any("not tried again" in str(m["content"]) for m in standin.messages.values())
    db = sqlite3.connect(tmp_path / "data" / "easel.sqlite3")
    statuses = Counter(status for (status,) in db.execute("SELECT status FROM jobs"))
    db.close()
    assert statuses == {"finished": USERS * JOBS_PER_USER}, statuses


def job_state(tmp_path: Path) -> tuple[str, int] | None:
    """The one job's status and how many restarts have queued it again, as the store holds them."""
    path = tmp_path / "data" / "easel.sqlite3"
    if not path.exists():
        return None
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT status, resumes FROM jobs").fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return None if row is None else (str(row[0]), int(row[1]))


async def test_a_job_merely_running_at_five_kills_is_not_blamed_and_is_delivered_once(
    standin: Standin, tmp_path: Path
) -> None:
    log = tmp_path / "easel.log"
    settings = {"EASEL_DEV_GUILD_ID": str(GUILD_ID), "EASEL_PREVIEWS": "false"}
    process = await start_main(tmp_path, standin.api_url, standin.gateway_url, log=log, **settings)
    try:
        await standin.wait_for(lambda r: r.method == "PUT" and "/commands" in r.path, limit_s=BOUND)
        person = StandinUser(4100000000000000001, "unlucky")
        # About 9 s of work on builtin:tiny: every kill below lands while it runs, each at another point of it.
        await standin.slash("imagine", person, prompt="crash 9 job 9", steps=150, width=192, height=192, seed="1")
        for kill, offset in enumerate((0.4, 2.2, 1.0, 3.1, 1.7)):
            # Running in this process: queued again by this start (after the first), and started since.
            running = ("running", kill)
            assert await until(lambda: job_state(tmp_path) == running, BOUND), "the job did not start"  # noqa: B023
            await asyncio.sleep(offset)
            assert job_state(tmp_path) == running
            process.kill()
            await process.wait()
            process = await start_main(tmp_path, standin.api_url, standin.gateway_url, log=log, **settings)
        done = await until(lambda: delivered(standin)[(9, 9)] >= 1, 2 * BOUND)
    finally:
        await stop(process)
    assert done, log.read_text(errors="replace")[-4000:]
    assert delivered(standin)[(9, 9)] == 1
    assert job_state(tmp_path) == ("finished", 5)  # each kill caught it running: five cut short, none blamed
    assert not any("not tried again" in str(m["content"]) for m in standin.messages.values())
