"""Apply workers' status events to the database: batched, idempotent, forward-only."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from common.db import Connection
from common.messages import HeartbeatMessage, LogMessage, StatusMessage
from common.states import RunState, RunStatus, StatusEvent, apply_event

# JSON's escape of a NUL character (not an escaped backslash followed by "u0000").
_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")
# An attempt's own outcomes; queued, retrying, dead and skipped describe the run.
_ATTEMPT_STATES = frozenset({RunState.RUNNING, RunState.SUCCEEDED, RunState.FAILED,
                             RunState.TIMED_OUT, RunState.CANCELLED})


@dataclass
class Applied:
    """What one batch changed (for logs, metrics and alerts)."""

    moved: int = 0
    ignored: int = 0
    dead: list[dict[str, Any]] = field(default_factory=list)
    paused_jobs: list[int] = field(default_factory=list)


def apply(conn: Connection, events: Sequence[StatusMessage]) -> Applied:
    """Apply status events in one transaction; stale or backward events are ignored."""
    result = Applied()
    if not events:
        return result
    ids = sorted({e.run_id for e in events})
    rows = {r["id"]: r for r in conn.execute(
        "SELECT id, job_id, attempt, state, started_at, finished_at, worker, exit_code, error,"
        " reason FROM runs WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (ids,))}
    changed: dict[int, RunStatus] = {}
    attempts: dict[tuple[int, int], RunStatus] = {}
    for event in sorted(events, key=lambda e: e.at):
        row = rows.get(event.run_id)
        if row is None:
            result.ignored += 1
            continue
        current = changed.get(event.run_id) or _status(row)
        moved = apply_event(current, StatusEvent(
            attempt=event.attempt, state=event.state, at=event.at, worker=event.worker,
            started_at=event.started_at, exit_code=event.exit_code, error=event.error,
            reason=event.reason))
        if moved is None:
            result.ignored += 1
            continue
        result.moved += 1
        changed[event.run_id] = moved
        if moved.state in _ATTEMPT_STATES:
            attempts[(event.run_id, moved.attempt)] = moved
    if changed:
        _write_runs(conn, changed)
        _write_attempts(conn, attempts)
        _count_failures(conn, rows, changed, result)
    return result


def _status(row: dict[str, Any]) -> RunStatus:
    return RunStatus(attempt=row["attempt"], state=RunState(row["state"]),
                     started_at=row["started_at"], finished_at=row["finished_at"],
                     worker=row["worker"], exit_code=row["exit_code"], error=row["error"],
                     reason=row["reason"])


def records(rows: list[dict[str, Any]]) -> str:
    """Rows as one JSON parameter for json_to_recordset: one C-encoded string instead of an
    array per column, which psycopg builds value by value in Python (times must already be
    ISO 8601 text: see `iso`). A NUL character, which PostgreSQL text cannot hold, becomes
    U+FFFD: an error message carrying one must not stop the status queue."""
    text = json.dumps(rows, separators=(",", ":"))
    return _NUL.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


def iso(value: datetime | None) -> str | None:
    """A time as ISO 8601 text (None stays None)."""
    return None if value is None else value.isoformat()


def _write_runs(conn: Connection, changed: dict[int, RunStatus]) -> None:
    conn.execute(
        "UPDATE runs SET attempt = t.a, state = t.s, started_at = t.st, finished_at = t.f, "
        "worker = t.w, exit_code = t.x, error = t.e, reason = t.r, updated_at = now(), "
        "heartbeat_at = CASE WHEN t.s = 'running' THEN now() ELSE runs.heartbeat_at END "
        "FROM json_to_recordset(%s::json) AS t(id bigint, a int, s text, st timestamptz, "
        "f timestamptz, w text, x int, e text, r text) WHERE runs.id = t.id",
        (records([{"id": i, "a": s.attempt, "s": str(s.state), "st": iso(s.started_at),
                    "f": iso(s.finished_at), "w": s.worker, "x": s.exit_code, "e": s.error,
                    "r": s.reason} for i, s in changed.items()]),))


def _write_attempts(conn: Connection, attempts: dict[tuple[int, int], RunStatus]) -> None:
    if not attempts:
        return
    conn.execute(
        "INSERT INTO run_attempts (run_id, attempt, state, worker, started_at, finished_at,"
        " exit_code, error) SELECT * FROM json_to_recordset(%s::json) AS t(i bigint, a int,"
        " s text, w text, st timestamptz, f timestamptz, x int, e text) "
        "ON CONFLICT (run_id, attempt) DO UPDATE SET state = excluded.state, "
        "worker = COALESCE(excluded.worker, run_attempts.worker), "
        "started_at = COALESCE(excluded.started_at, run_attempts.started_at), "
        "finished_at = excluded.finished_at, exit_code = excluded.exit_code, "
        "error = excluded.error",
        (records([{"i": k[0], "a": k[1], "s": str(s.state), "w": s.worker,
                    "st": iso(s.started_at), "f": iso(s.finished_at), "x": s.exit_code,
                    "e": s.error} for k, s in attempts.items()]),))


def _count_failures(conn: Connection, rows: dict[int, dict[str, Any]],
                    changed: dict[int, RunStatus], result: Applied) -> None:
    """Consecutive failed runs per job; pause the job when it asked for that."""
    succeeded = sorted({rows[i]["job_id"] for i, s in changed.items()
                        if s.state is RunState.SUCCEEDED})
    failed = [rows[i]["job_id"] for i, s in changed.items() if s.state is RunState.DEAD]
    result.dead = [{"run_id": i, "job_id": rows[i]["job_id"], "attempt": s.attempt,
                    "error": s.error, "reason": s.reason}
                   for i, s in changed.items() if s.state is RunState.DEAD]
    if succeeded:
        conn.execute("UPDATE jobs SET consecutive_failures = 0 WHERE id = ANY(%s) "
                     "AND consecutive_failures <> 0", (succeeded,))
    for job_id in sorted(set(failed)):
        row = conn.execute(
            "UPDATE jobs SET consecutive_failures = consecutive_failures + %s, "
            "state = CASE WHEN state = 'active' AND pause_after_failures IS NOT NULL AND "
            "  consecutive_failures + %s >= pause_after_failures THEN 'paused' ELSE state END "
            "WHERE id = %s RETURNING state, pause_after_failures, consecutive_failures",
            (failed.count(job_id), failed.count(job_id), job_id)).fetchone()
        if row and row["state"] == "paused" and row["pause_after_failures"] is not None \
                and row["consecutive_failures"] >= row["pause_after_failures"]:
            result.paused_jobs.append(job_id)


def heartbeats(conn: Connection, beats: Sequence[HeartbeatMessage]) -> int:
    """Refresh the heartbeat of running attempts; returns rows touched."""
    pairs = [(run_id, attempt, hb.at) for hb in beats for run_id, attempt in hb.runs]
    if not pairs:
        return 0
    cur = conn.execute(
        "UPDATE runs SET heartbeat_at = GREATEST(runs.heartbeat_at, t.at) "
        "FROM unnest(%s::bigint[], %s::int[], %s::timestamptz[]) AS t(id, a, at) "
        "WHERE runs.id = t.id AND runs.attempt = t.a AND runs.state = 'running'",
        ([p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs]))
    return cur.rowcount


def logs(conn: Connection, chunks: Sequence[LogMessage]) -> None:
    """Store output chunks (a replayed chunk is stored once)."""
    if chunks:
        conn.execute(
            "INSERT INTO run_logs (run_id, attempt, stream, seq, data) "
            "SELECT t.* FROM unnest(%s::bigint[], %s::int[], %s::text[], %s::int[], %s::bytea[])"
            " AS t(run_id, attempt, stream, seq, data) "
            "WHERE EXISTS (SELECT 1 FROM runs WHERE runs.id = t.run_id) ON CONFLICT DO NOTHING",
            ([c.run_id for c in chunks], [c.attempt for c in chunks], [c.stream for c in chunks],
             [c.seq for c in chunks], [c.data for c in chunks]))

