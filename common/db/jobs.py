"""Job queries: create, read, update, pause, resume, cancel, run now. Parameters only."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from common.db import Connection
from common.errors import InvalidInput
from common.jobs import JobSpec

_COLUMNS = [name for name in JobSpec.__dataclass_fields__ if name != "allow_past"]


def create(conn: Connection, spec: JobSpec, *, first_fire: datetime | None, now: datetime,
           actor: str) -> tuple[dict[str, Any], bool]:
    """Store a validated job; returns (job, created). With an idempotency key that already
    names a job, that job is returned unchanged and `created` is False."""
    values = asdict(spec)
    values.pop("allow_past")
    values["payload"] = Jsonb(values["payload"])
    columns = [*_COLUMNS, "anchor_at", "next_fire_at", "state"]
    params = [values[c] for c in _COLUMNS] + [now, first_fire,
                                              "active" if first_fire else "completed"]
    row = conn.execute(
        f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
        "ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING *",
        params).fetchone()
    if row is None:
        existing = conn.execute(
            "SELECT * FROM jobs WHERE tenant_id = %s AND idempotency_key = %s",
            (spec.tenant_id, spec.idempotency_key)).fetchone()
        assert existing is not None
        return existing, False
    audit(conn, actor, "job.create", row["id"], {"name": spec.name})
    return row, True


def get(conn: Connection, job_id: int) -> dict[str, Any]:
    """One job; InvalidInput when there is none with that id."""
    row = conn.execute("SELECT * FROM jobs WHERE id = %s", (job_id,)).fetchone()
    if row is None:
        raise InvalidInput(f"no job with id {job_id}")
    return row


def find(conn: Connection, ref: str) -> dict[str, Any]:
    """A job by id or by unique name; InvalidInput when none or several match."""
    if ref.isdigit():
        return get(conn, int(ref))
    rows = conn.execute("SELECT * FROM jobs WHERE name = %s AND state <> 'cancelled' "
                        "ORDER BY id LIMIT 2", (ref,)).fetchall()
    if not rows:
        raise InvalidInput(f"no job named {ref!r}")
    if len(rows) > 1:
        raise InvalidInput(f"several jobs are named {ref!r}; use the job id")
    return rows[0]


def list_jobs(conn: Connection, *, state: str | None = None, limit: int = 100,
              after_id: int = 0) -> list[dict[str, Any]]:
    """Jobs in id order (keyset pagination with `after_id`)."""
    return conn.execute(
        "SELECT * FROM jobs WHERE id > %s AND (%s::text IS NULL OR state = %s) "
        "ORDER BY id LIMIT %s", (after_id, state, state, limit)).fetchall()


def replace(conn: Connection, job_id: int, spec: JobSpec, *, first_fire: datetime | None,
            now: datetime, expected_version: int | None, actor: str) -> dict[str, Any]:
    """Update a job's definition from its next fire on (optimistic: `expected_version`)."""
    current = get(conn, job_id)
    if expected_version is not None and current["version"] != expected_version:
        raise InvalidInput(f"job {job_id} changed meanwhile (version {current['version']}, "
                           f"expected {expected_version}); read it again and retry")
    if current["state"] == "cancelled":
        raise InvalidInput(f"job {job_id} is cancelled and cannot be changed")
    values = asdict(spec)
    values.pop("allow_past")
    values["payload"] = Jsonb(values["payload"])
    sets = ", ".join(f"{c} = %s" for c in _COLUMNS if c != "tenant_id")
    params = [values[c] for c in _COLUMNS if c != "tenant_id"]
    state = current["state"] if first_fire else "completed"
    row = conn.execute(
        f"UPDATE jobs SET {sets}, anchor_at = %s, next_fire_at = %s, state = %s, "
        "version = version + 1, updated_at = now() WHERE id = %s RETURNING *",
        [*params, now, first_fire, state, job_id]).fetchone()
    assert row is not None
    audit(conn, actor, "job.update", job_id, {"version": row["version"]})
    return row


def set_state(conn: Connection, job_id: int, state: str, *, actor: str,
              next_fire_at: datetime | None = None) -> dict[str, Any]:
    """Pause, resume or cancel a job. Resuming sets the fire cursor (`next_fire_at`)."""
    current = get(conn, job_id)
    allowed = {"paused": ("active",), "active": ("paused",),
               "cancelled": ("active", "paused", "completed")}[state]
    if current["state"] == state:
        return current
    if current["state"] not in allowed:
        raise InvalidInput(f"job {job_id} is {current['state']}; it cannot become {state}")
    row = conn.execute(
        "UPDATE jobs SET state = %s, next_fire_at = COALESCE(%s, next_fire_at), "
        "consecutive_failures = CASE WHEN %s = 'active' THEN 0 ELSE consecutive_failures END, "
        "version = version + 1, updated_at = now() WHERE id = %s RETURNING *",
        (state, next_fire_at, state, job_id)).fetchone()
    assert row is not None
    audit(conn, actor, f"job.{ {'paused': 'pause', 'active': 'resume'}.get(state, 'cancel')}",
          job_id, {})
    return row


def run_now(conn: Connection, job_id: int, *, now: datetime, epoch: int,
            actor: str) -> dict[str, Any]:
    """Add a run of the job due now, besides its schedule; returns the run."""
    job = get(conn, job_id)
    if job["state"] == "cancelled":
        raise InvalidInput(f"job {job_id} is cancelled")
    row = conn.execute(
        "INSERT INTO runs (job_id, scheduled_for, due_at, priority, pool, epoch, trigger) "
        "VALUES (%s, %s, %s, %s, %s, %s, 'manual') ON CONFLICT (job_id, scheduled_for) DO NOTHING "
        "RETURNING *", (job_id, now, now, job["priority"], job["pool"], epoch)).fetchone()
    if row is None:
        raise InvalidInput(f"job {job_id} already has a run for {now.isoformat()}")
    audit(conn, actor, "job.run_now", job_id, {"run_id": row["id"]})
    return row


def audit(conn: Connection, actor: str, action: str, job_id: int | None,
          details: dict[str, Any]) -> None:
    """Append to the audit log."""
    conn.execute("INSERT INTO audit_log (actor, action, job_id, details) VALUES (%s, %s, %s, %s)",
                 (actor, action, job_id, json.dumps(details)))
