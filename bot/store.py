"""The job store: one SQLite file under the data dir with every job's params and outcome, guild and user settings.

Buttons read their state from here, so they keep working after a restart. Every query is a single-row read or
write on a local file, cheap enough to run on the event loop. Every write is one statement, so SQLite applies it
whole or not at all: a full disk raises StorageFullError and leaves the store as it was.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from engine.errors import StorageFullError
from engine.params import GenerationParams
from engine.styles import Style

DB_NAME = "easel.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id      TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    guild_id    TEXT,
    channel_id  TEXT,
    params      TEXT NOT NULL,
    status      TEXT NOT NULL,
    message_id  TEXT,
    error       TEXT,
    created_at  REAL NOT NULL,
    finished_at REAL,
    resumes     INTEGER NOT NULL DEFAULT 0,
    spoiler     INTEGER NOT NULL DEFAULT 0,
    started_at  REAL,
    crash_points TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS process (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    alive_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_user ON jobs (user_id, created_at);
CREATE TABLE IF NOT EXISTS guild_settings (
    guild_id      TEXT PRIMARY KEY,
    default_model TEXT
);
CREATE TABLE IF NOT EXISTS user_settings (
    user_id  TEXT PRIMARY KEY,
    defaults TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS scope_settings (
    scope    TEXT PRIMARY KEY,
    defaults TEXT NOT NULL,
    ceilings TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS guild_nsfw (
    guild_id TEXT PRIMARY KEY,
    policy   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS guild_styles (
    guild_id TEXT PRIMARY KEY,
    styles   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS synced_commands (
    scope     TEXT PRIMARY KEY,
    signature TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS job_suggestions (
    job_id      TEXT PRIMARY KEY,
    suggestions TEXT NOT NULL
);
"""


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # left open by a restart, and could not be queued again
    DELETED = "deleted"  # finished, then its message was deleted


_OPEN = (JobStatus.QUEUED, JobStatus.RUNNING)
CLOSED = tuple(status for status in JobStatus if status not in _OPEN)


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    user_id: int
    guild_id: int | None
    channel_id: int | None
    params: GenerationParams
    status: JobStatus
    message_id: int | None
    error: str | None
    created_at: float
    finished_at: float | None
    resumes: int = 0  # how many restarts have queued this job again
    spoiler: bool = False  # its images go out behind a spoiler (the server's NSFW policy)
    started_at: float | None = None  # when it last started running
    # Seconds it had run when each process that died while running it was last known alive (None: unknown).
    crash_points: tuple[float | None, ...] = ()


def _opt_int(value: str | None) -> int | None:
    return int(value) if value is not None else None


def _opt_str(value: int | None) -> str | None:
    return str(value) if value is not None else None


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        job_id=row["job_id"],
        user_id=int(row["user_id"]),
        guild_id=_opt_int(row["guild_id"]),
        channel_id=_opt_int(row["channel_id"]),
        params=GenerationParams.from_dict(json.loads(row["params"])),
        status=JobStatus(row["status"]),
        message_id=_opt_int(row["message_id"]),
        error=row["error"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        resumes=row["resumes"],
        spoiler=bool(row["spoiler"]),
        started_at=row["started_at"],
        crash_points=tuple(json.loads(row["crash_points"])),
    )


class JobStore:
    """SQLite-backed store; open once per process with `JobStore.open(data_dir)`, close on shutdown."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if "resumes" not in columns:  # a data dir from before open jobs were resumed
            self._db.execute("ALTER TABLE jobs ADD COLUMN resumes INTEGER NOT NULL DEFAULT 0")
        if "spoiler" not in columns:  # a data dir from before the NSFW policy
            self._db.execute("ALTER TABLE jobs ADD COLUMN spoiler INTEGER NOT NULL DEFAULT 0")
        if "crash_points" not in columns:  # a data dir from before crashes were told apart
            self._db.execute("ALTER TABLE jobs ADD COLUMN started_at REAL")
            self._db.execute("ALTER TABLE jobs ADD COLUMN crash_points TEXT NOT NULL DEFAULT '[]'")

    @classmethod
    def open(cls, data_dir: Path) -> JobStore:
        return cls(data_dir / DB_NAME)

    def close(self) -> None:
        self._db.close()

    def _write(self, sql: str, values: tuple[Any, ...]) -> None:
        try:
            self._db.execute(sql, values)
        except sqlite3.OperationalError as err:
            if err.sqlite_errorcode != sqlite3.SQLITE_FULL:
                raise
            raise StorageFullError(
                "Easel's disk is full, so this could not be saved; nothing was changed. Try again later (an admin "
                "has been told in the log)."
            ) from err

    def synced_commands(self, scope: str) -> str | None:
        """The signature of the slash commands last synced to `scope` ("global" or "guild:<id>")."""
        row = self._db.execute("SELECT signature FROM synced_commands WHERE scope = ?", (scope,)).fetchone()
        return None if row is None else str(row["signature"])

    def set_synced_commands(self, scope: str, signature: str) -> None:
        self._write(
            "INSERT INTO synced_commands (scope, signature) VALUES (?, ?) "
            "ON CONFLICT (scope) DO UPDATE SET signature = excluded.signature",
            (scope, signature),
        )

    # -- jobs ------------------------------------------------------------------------------------------------

    def add_job(
        self,
        job_id: str,
        *,
        user_id: int,
        guild_id: int | None,
        channel_id: int | None,
        params: GenerationParams,
        spoiler: bool = False,
    ) -> None:
        self._write(
            "INSERT INTO jobs (job_id, user_id, guild_id, channel_id, params, status, created_at, spoiler)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job_id,
                str(user_id),
                _opt_str(guild_id),
                _opt_str(channel_id),
                json.dumps(params.to_dict()),
                JobStatus.QUEUED.value,
                time.time(),
                int(spoiler),
            ),
        )

    def get_job(self, job_id: str) -> JobRecord | None:
        row = self._db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else _record(row)

    def open_jobs(self) -> list[JobRecord]:
        """Jobs a previous process left queued or running, in the order they were queued."""
        rows = self._db.execute(
            "SELECT * FROM jobs WHERE status IN (?, ?) ORDER BY created_at, rowid", tuple(s.value for s in _OPEN)
        ).fetchall()
        return [_record(row) for row in rows]

    def user_open_jobs(self, user_id: int) -> list[JobRecord]:
        """A user's queued and running jobs, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM jobs WHERE user_id = ? AND status IN (?, ?) ORDER BY created_at, rowid",
            (str(user_id), *(s.value for s in _OPEN)),
        ).fetchall()
        return [_record(row) for row in rows]

    def user_recent_jobs(
        self, user_id: int, *, limit: int, statuses: tuple[JobStatus, ...] = CLOSED
    ) -> list[JobRecord]:
        """A user's latest jobs in `statuses` (by default every closed one), newest first."""
        marks = ", ".join("?" * len(statuses))  # placeholders only: the values are bound, never formatted in
        rows = self._db.execute(
            f"SELECT * FROM jobs WHERE user_id = ? AND status IN ({marks})"
            " ORDER BY COALESCE(finished_at, created_at) DESC, rowid DESC LIMIT ?",
            (str(user_id), *(s.value for s in statuses), limit),
        ).fetchall()
        return [_record(row) for row in rows]

    def mark_resumed(self, job_id: str, *, cut_short: bool, ran_for: float | None = None) -> None:
        """Queued again after a restart: back to QUEUED. `cut_short` (it was running when the process died) counts
        one more resume and records how far it had run (`ran_for` seconds, if known); a job that was only waiting
        has done nothing that could have killed the process."""
        record = self.get_job(job_id)
        points = [*(record.crash_points if record else ()), *([ran_for] if cut_short else [])]
        self._write(
            "UPDATE jobs SET status = ?, resumes = resumes + ?, crash_points = ? WHERE job_id = ?",
            (JobStatus.QUEUED.value, int(cut_short), json.dumps(points), job_id),
        )

    def alive(self, at: float | None = None) -> None:
        """The process is alive now: how far a job had run when the process died is told from the last of these."""
        self._write(
            "INSERT INTO process (id, alive_at) VALUES (1, ?)"
            " ON CONFLICT(id) DO UPDATE SET alive_at = excluded.alive_at",
            (time.time() if at is None else at,),
        )

    def last_alive(self) -> float | None:
        row = self._db.execute("SELECT alive_at FROM process WHERE id = 1").fetchone()
        return None if row is None else float(row["alive_at"])

    def set_status(self, job_id: str, status: JobStatus, *, error: str | None = None) -> None:
        now = time.time()
        finished = None if status in _OPEN else now
        started = now if status is JobStatus.RUNNING else None
        self._write(
            "UPDATE jobs SET status = ?, error = COALESCE(?, error),"
            " finished_at = COALESCE(finished_at, ?), started_at = COALESCE(?, started_at) WHERE job_id = ?",
            (status.value, error, finished, started, job_id),
        )

    def set_message(self, job_id: str, message_id: int) -> None:
        self._write("UPDATE jobs SET message_id = ? WHERE job_id = ?", (str(message_id), job_id))

    # -- guild settings --------------------------------------------------------------------------------------

    def guild_default_model(self, guild_id: int) -> str | None:
        row = self._db.execute(
            "SELECT default_model FROM guild_settings WHERE guild_id = ?", (str(guild_id),)
        ).fetchone()
        return None if row is None else row["default_model"]

    def set_guild_default_model(self, guild_id: int, model: str | None) -> None:
        self._write(
            "INSERT INTO guild_settings (guild_id, default_model) VALUES (?, ?)"
            " ON CONFLICT(guild_id) DO UPDATE SET default_model = excluded.default_model",
            (str(guild_id), model),
        )

    # -- server and channel layers ------------------------------------------------------------------------------

    def scope_settings(self, scope: str) -> tuple[dict[str, Any], dict[str, int]]:
        """The defaults and ceilings an admin stored for `scope` ("guild:<id>" or "channel:<id>"); empty if none.
        A server's default model is `guild_default_model`, shared with `/model set`."""
        row = self._db.execute("SELECT defaults, ceilings FROM scope_settings WHERE scope = ?", (scope,)).fetchone()
        if row is None:
            return {}, {}
        return dict(json.loads(row["defaults"])), dict(json.loads(row["ceilings"]))

    def set_scope_settings(self, scope: str, defaults: Mapping[str, Any], ceilings: Mapping[str, int]) -> None:
        if not defaults and not ceilings:
            self._write("DELETE FROM scope_settings WHERE scope = ?", (scope,))
            return
        self._write(
            "INSERT INTO scope_settings (scope, defaults, ceilings) VALUES (?, ?, ?)"
            " ON CONFLICT(scope) DO UPDATE SET defaults = excluded.defaults, ceilings = excluded.ceilings",
            (scope, json.dumps(dict(defaults)), json.dumps(dict(ceilings))),
        )

    def nsfw_policy(self, guild_id: int) -> dict[str, Any]:
        """A server's stored NSFW policy (bot.nsfw.Policy.stored()), empty when it has chosen nothing."""
        row = self._db.execute("SELECT policy FROM guild_nsfw WHERE guild_id = ?", (str(guild_id),)).fetchone()
        return {} if row is None else dict(json.loads(row["policy"]))

    def suggestions(self, job_id: str) -> list[str]:
        """A `/describe` job's prompt suggestions (what its buttons imagine), empty when none were kept."""
        row = self._db.execute("SELECT suggestions FROM job_suggestions WHERE job_id = ?", (job_id,)).fetchone()
        return [] if row is None else [str(s) for s in json.loads(row["suggestions"])]

    def set_suggestions(self, job_id: str, suggestions: Sequence[str]) -> None:
        self._write(
            "INSERT INTO job_suggestions (job_id, suggestions) VALUES (?, ?)"
            " ON CONFLICT(job_id) DO UPDATE SET suggestions = excluded.suggestions",
            (job_id, json.dumps(list(suggestions))),
        )

    def set_nsfw_policy(self, guild_id: int, policy: Mapping[str, Any]) -> None:
        self._write(
            "INSERT INTO guild_nsfw (guild_id, policy) VALUES (?, ?)"
            " ON CONFLICT(guild_id) DO UPDATE SET policy = excluded.policy",
            (str(guild_id), json.dumps(dict(policy))),
        )

    def styles(self, guild_id: int) -> list[Style]:
        """A server's prompt styles, in the order they were added."""
        row = self._db.execute("SELECT styles FROM guild_styles WHERE guild_id = ?", (str(guild_id),)).fetchone()
        return [] if row is None else [Style(*entry) for entry in json.loads(row["styles"])]

    def set_styles(self, guild_id: int, styles: Sequence[Style]) -> None:
        """Replace a server's styles whole (one statement: all or nothing)."""
        rows = json.dumps([[s.name, s.prompt, s.negative_prompt] for s in styles])
        self._write(
            "INSERT INTO guild_styles (guild_id, styles) VALUES (?, ?)"
            " ON CONFLICT(guild_id) DO UPDATE SET styles = excluded.styles",
            (str(guild_id), rows),
        )

    # -- user settings ---------------------------------------------------------------------------------------

    def user_defaults(self, user_id: int) -> dict[str, Any]:
        """A user's stored /imagine defaults (raw build_params options); empty when none."""
        row = self._db.execute("SELECT defaults FROM user_settings WHERE user_id = ?", (str(user_id),)).fetchone()
        return {} if row is None else dict(json.loads(row["defaults"]))

    def set_user_defaults(self, user_id: int, defaults: Mapping[str, Any]) -> None:
        if not defaults:
            self._write("DELETE FROM user_settings WHERE user_id = ?", (str(user_id),))
            return
        self._write(
            "INSERT INTO user_settings (user_id, defaults) VALUES (?, ?)"
            " ON CONFLICT(user_id) DO UPDATE SET defaults = excluded.defaults",
            (str(user_id), json.dumps(dict(defaults))),
        )
