"""The leader's queries: materialise fire times, claim due runs, find lost work.

Batch statements (unnest of arrays) keep a round trip per batch, not per run. Every
function runs inside the caller's transaction, which the caller fences first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from common.db import Connection


@dataclass(frozen=True)
class NewRun:
    """A fire time to record: to be dispatched (`state` scheduled) or skipped."""

    job_id: int
    scheduled_for: datetime
    due_at: datetime
    priority: int
    pool: str
    state: str = "scheduled"
    reason: str | None = None


def due_jobs(conn: Connection, horizon: datetime, limit: int) -> list[dict[str, Any]]:
    """Active jobs with a fire time up to `horizon`, locked for this transaction."""
    return conn.execute(
        "SELECT * FROM jobs WHERE state = 'active' AND next_fire_at <= %s "
        "ORDER BY next_fire_at LIMIT %s FOR UPDATE SKIP LOCKED", (horizon, limit)).fetchall()


def record_fires(conn: Connection, runs: Sequence[NewRun], epoch: int) -> int:
    """Insert runs; a fire time that already has a run is left alone. Returns rows added."""
    if not runs:
        return 0
    cur = conn.execute(
        "INSERT INTO runs (job_id, scheduled_for, due_at, priority, pool, state, reason, epoch,"
        " finished_at) "
        "SELECT j, s, d, p, pl, st, r, %s, CASE WHEN st = 'skipped' THEN now() END FROM unnest("
        "%s::bigint[], %s::timestamptz[], %s::timestamptz[], %s::smallint[], %s::text[],"
        " %s::text[], %s::text[]) AS t(j, s, d, p, pl, st, r) "
        "ON CONFLICT (job_id, scheduled_for) DO NOTHING",
        (epoch, [r.job_id for r in runs], [r.scheduled_for for r in runs],
         [r.due_at for r in runs], [r.priority for r in runs], [r.pool for r in runs],
         [r.state for r in runs], [r.reason for r in runs]))
    return cur.rowcount


def advance_jobs(conn: Connection, cursors: Sequence[tuple[int, datetime | None]]) -> None:
    """Move each job's fire cursor; a job with no fire left becomes completed."""
    if not cursors:
        return
    conn.execute(
        "UPDATE jobs SET next_fire_at = t.n, "
        "state = CASE WHEN t.n IS NULL THEN 'completed' ELSE state END, updated_at = now() "
        "FROM unnest(%s::bigint[], %s::timestamptz[]) AS t(id, n) WHERE jobs.id = t.id",
        ([c[0] for c in cursors], [c[1] for c in cursors]))


def pending(conn: Connection, horizon: datetime, limit: int) -> list[dict[str, Any]]:
    """Runs waiting for dispatch, due up to `horizon` (id, due_at, priority)."""
    return conn.execute(
        "SELECT id, due_at, priority FROM runs WHERE state = 'scheduled' AND due_at <= %s "
        "ORDER BY due_at LIMIT %s", (horizon, limit)).fetchall()


_RUN_FIELDS = (
    "r.id AS run_id, r.job_id, r.scheduled_for, r.attempt, r.dispatch, r.pool, r.priority, "
    "j.job_type, j.payload, j.max_attempts, j.timeout_s, j.concurrency, j.start_deadline_s, "
    "j.backoff_base_s, j.backoff_factor, j.backoff_cap_s, j.backoff_jitter")


def claim(conn: Connection, ids: Sequence[int], epoch: int
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Claim scheduled runs for dispatch as attempt 1, in one statement, and record as
    skipped those whose job is paused or cancelled (manual runs of a paused job still run)
    or whose start deadline passed. Returns (skipped: id and reason; claimed: what a run
    message needs, with the due time, as a run may be dispatched shortly before it)."""
    rows = conn.execute(
        "WITH c AS (SELECT r.id, CASE WHEN j.state = 'cancelled' THEN 'job cancelled' "
        "  WHEN j.state = 'paused' AND r.trigger = 'schedule' THEN 'job paused' "
        "  WHEN j.start_deadline_s IS NOT NULL AND "
        "    r.due_at + make_interval(secs => j.start_deadline_s) < now() "
        "  THEN format('start deadline missed: due %%s, deadline %%s s', r.due_at, "
        "              j.start_deadline_s) END AS skip "
        "  FROM runs r JOIN jobs j ON j.id = r.job_id "
        "  WHERE r.id = ANY(%s) AND r.state = 'scheduled' FOR UPDATE OF r) "
        "UPDATE runs r SET "
        "state = CASE WHEN c.skip IS NULL THEN 'queued' ELSE 'skipped' END, "
        "attempt = CASE WHEN c.skip IS NULL THEN 1 ELSE r.attempt END, "
        "dispatch = CASE WHEN c.skip IS NULL THEN r.dispatch + 1 ELSE r.dispatch END, "
        "queued_at = CASE WHEN c.skip IS NULL THEN now() ELSE r.queued_at END, "
        "epoch = CASE WHEN c.skip IS NULL THEN %s ELSE r.epoch END, "
        "finished_at = CASE WHEN c.skip IS NULL THEN r.finished_at ELSE now() END, "
        "reason = COALESCE(c.skip, r.reason), updated_at = now() "
        "FROM c, jobs j WHERE r.id = c.id AND j.id = r.job_id "
        f"RETURNING c.skip, {_RUN_FIELDS}, r.epoch, r.due_at",
        (list(ids), epoch)).fetchall()
    skipped = [{"id": r["run_id"], "reason": r["skip"]} for r in rows if r["skip"] is not None]
    return skipped, [r for r in rows if r["skip"] is None]


def lost_attempts(conn: Connection, *, stale_before: datetime, quiet_before: datetime,
                  live_workers: Sequence[str] | None,
                  limit: int) -> list[dict[str, Any]]:
    """Attempts whose worker is gone, locked for this transaction: running with no
    heartbeat since `quiet_before` while their worker is not among the `live_workers`;
    when membership is unknown (`live_workers` None), running with no heartbeat since
    `stale_before`. A live member's attempt is never taken: its heartbeats may only be
    late (status intake held up by a RabbitMQ outage), and if it gave the attempt up, its
    own complete heartbeat says so. And runs waiting for a retry that has not come for
    longer than the job's longest backoff plus the stale window."""
    running = conn.execute(
        f"SELECT {_RUN_FIELDS}, r.worker FROM runs r JOIN jobs j ON j.id = r.job_id "
        "WHERE r.state = 'running' AND CASE WHEN %(live)s::text[] IS NULL "
        "  THEN r.heartbeat_at < %(stale)s "
        "  ELSE r.heartbeat_at < %(quiet)s "
        "    AND NOT (coalesce(r.worker, '') = ANY(%(live)s::text[])) END "
        "ORDER BY r.heartbeat_at LIMIT %(limit)s FOR UPDATE OF r SKIP LOCKED",
        {"live": live_workers, "stale": stale_before, "quiet": quiet_before,
         "limit": limit}).fetchall()
    waiting = conn.execute(
        f"SELECT {_RUN_FIELDS}, r.worker FROM runs r JOIN jobs j ON j.id = r.job_id "
        "WHERE r.state = 'retrying' AND "
        "r.updated_at < %s - make_interval(secs => j.backoff_cap_s) "
        "ORDER BY r.updated_at LIMIT %s FOR UPDATE OF r SKIP LOCKED",
        (stale_before, limit)).fetchall()
    return running + waiting


def unsent_retries(conn: Connection, stale_before: datetime, limit: int
                   ) -> list[dict[str, Any]]:
    """Runs whose last attempt failed or timed out and that neither went on to `retrying`
    (reported once the worker's retry message is confirmed) nor to `dead`, for longer than
    the stale window plus the delay before their next attempt (which a retry message
    confirmed without its report would have started within): the worker lost its
    connection or died before its retry or dead letter was confirmed. Locked for this
    transaction."""
    return conn.execute(
        f"SELECT {_RUN_FIELDS}, r.worker, r.state FROM runs r JOIN jobs j ON j.id = r.job_id "
        "WHERE r.state IN ('failed', 'timed_out') AND r.updated_at < %s - make_interval("
        "  secs => CASE WHEN r.attempt >= j.max_attempts THEN 0 "
        # The delay before attempt n + 1 (common.schedule.backoff), compared as logarithms
        # so that a large factor cannot overflow.
        "    WHEN (r.attempt - 1) * ln(j.backoff_factor) >= ln(j.backoff_cap_s / j.backoff_base_s)"
        "    THEN j.backoff_cap_s "
        "    ELSE j.backoff_base_s * power(j.backoff_factor, r.attempt - 1) END) "
        "ORDER BY r.updated_at LIMIT %s FOR UPDATE OF r SKIP LOCKED",
        (stale_before, limit)).fetchall()


def abandoned(conn: Connection, worker: str, at: datetime,
              executing: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
    """Attempts running on `worker` in the database that started before `at` but are not
    among those its complete heartbeat of `at` lists as `executing`: they ended without an
    outcome (given up, or the worker restarted). Locked for this transaction."""
    pairs = [f"{run}.{attempt}" for run, attempt in executing]
    return conn.execute(
        f"SELECT {_RUN_FIELDS}, r.epoch, r.worker FROM runs r JOIN jobs j ON j.id = r.job_id "
        "WHERE r.state = 'running' AND r.worker = %s AND r.started_at < %s "
        "AND NOT ((r.id || '.' || r.attempt) = ANY(%s::text[])) FOR UPDATE OF r",
        (worker, at, pairs)).fetchall()


def requeue(conn: Connection, ids: Sequence[int], epoch: int, error: str
            ) -> dict[int, dict[str, Any]]:
    """Give lost runs their next attempt (the caller publishes them after the commit, then
    records the confirmed copies). Returns, by run id, the fields that changed for the
    message (attempt, dispatch, epoch)."""
    if not ids:
        return {}
    return _by_run(conn.execute(
        "UPDATE runs SET state = 'queued', attempt = attempt + 1, dispatch = dispatch + 1, "
        "queued_at = now(), epoch = %s, error = %s, worker = NULL, started_at = NULL, "
        "heartbeat_at = NULL, updated_at = now() WHERE id = ANY(%s) "
        "RETURNING id, attempt, dispatch, epoch", (epoch, error, list(ids))).fetchall())


def bury(conn: Connection, ids: Sequence[int], reason: str) -> None:
    """Mark runs dead (no attempts left)."""
    if ids:
        conn.execute(
            "UPDATE runs SET state = 'dead', reason = %s, finished_at = now(), updated_at = now()"
            " WHERE id = ANY(%s)", (reason, list(ids)))


def unconfirmed(conn: Connection, epoch: int, copied_before: datetime,
                in_hand: Sequence[int], limit: int) -> list[dict[str, Any]]:
    """Queued runs whose latest copy RabbitMQ never confirmed, oldest first, locked for this
    transaction (rows another transaction holds are passed over): those of terms before
    `epoch` (their leader died or was deposed between the commit that queued them and the
    record of the confirm), and those of term `epoch` itself copied before `copied_before`
    and not `in_hand` of the leader (a status consumer died between its commit and its
    publish)."""
    return conn.execute(
        f"SELECT {_RUN_FIELDS}, r.epoch, r.due_at FROM runs r JOIN jobs j ON j.id = r.job_id "
        "WHERE r.state = 'queued' AND r.published_dispatch < r.dispatch AND (r.epoch < %s "
        "  OR (r.queued_at < %s AND NOT r.id = ANY(%s))) "
        "ORDER BY r.queued_at LIMIT %s FOR UPDATE OF r SKIP LOCKED",
        (epoch, copied_before, list(in_hand), limit)).fetchall()


def redispatch(conn: Connection, ids: Sequence[int], epoch: int) -> dict[int, dict[str, Any]]:
    """Record that queued runs are published again, as term `epoch`'s: a new copy, queued
    now (published after the commit, as in `requeue`). Returns, by run id, the fields that
    changed for the message (dispatch, epoch)."""
    if not ids:
        return {}
    return _by_run(conn.execute(
        "UPDATE runs SET epoch = %s, dispatch = dispatch + 1, queued_at = now(), "
        "updated_at = now() WHERE id = ANY(%s) RETURNING id, dispatch, epoch",
        (epoch, list(ids))).fetchall())


def queued_copies(conn: Connection, ids: Sequence[int]) -> dict[int, int]:
    """The latest copy (dispatch number) of each of these runs that is still queued,
    locked for this transaction in id order (as `record_published` locks them)."""
    rows = conn.execute("SELECT id, dispatch FROM runs WHERE id = ANY(%s) AND state = 'queued' "
                        "ORDER BY id FOR UPDATE", (sorted(set(ids)),)).fetchall()
    return {row["id"]: row["dispatch"] for row in rows}


def record_published(conn: Connection, copies: Sequence[tuple[int, int]]) -> None:
    """Record that RabbitMQ confirmed these (run id, dispatch) copies. Not fenced: it states
    a fact, true whichever term sent them. Rows are locked in id order, as the status
    consumer locks them, so the two never deadlock; a run that has left `queued` or been
    sent again since needs no record."""
    if not copies:
        return
    ordered = sorted(copies)
    conn.execute(
        "WITH c AS (SELECT r.id, t.d FROM runs r "
        "  JOIN unnest(%s::bigint[], %s::int[]) AS t(id, d) ON r.id = t.id "
        "  WHERE r.state = 'queued' AND r.dispatch = t.d AND r.published_dispatch < t.d "
        "  ORDER BY r.id FOR UPDATE OF r) "
        "UPDATE runs SET published_dispatch = c.d FROM c WHERE runs.id = c.id",
        ([c[0] for c in ordered], [c[1] for c in ordered]))


def _by_run(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """RETURNING rows keyed by run id (the id itself left out)."""
    return {row.pop("id"): row for row in rows}


def claimed_runs(conn: Connection, ids: Sequence[int]) -> list[dict[str, Any]]:
    """What a run message needs (with its due time, before which a first attempt must not
    start), for runs already claimed (locks them)."""
    return conn.execute(
        f"SELECT {_RUN_FIELDS}, r.epoch, r.state, r.due_at FROM runs r "
        "JOIN jobs j ON j.id = r.job_id "
        "WHERE r.id = ANY(%s) FOR UPDATE OF r", (list(ids),)).fetchall()
