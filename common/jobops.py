"""Job management, the operations behind the CLI (and the API): each validates its input,
runs in one transaction and leaves an audit record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from datetime import UTC, datetime
from typing import Any

from common.db import Database, cancels
from common.db import epoch as epochs
from common.db import jobs as store
from common.errors import InvalidInput
from common.jobs import JobSpec, validate
from common.messages import CancelMessage

Notify = Callable[[CancelMessage], None]
_SPEC_FIELDS = {f.name for f in fields(JobSpec)} - {"allow_past"}


def now_utc() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def create_job(db: Database, spec: JobSpec, *, actor: str,
               now: datetime | None = None) -> tuple[dict[str, Any], bool]:
    """Validate and store a job; returns (job, created)."""
    now = now or now_utc()
    spec, first = validate(spec, now=now)
    with db.transaction() as conn:
        return store.create(conn, spec, first_fire=first, now=now, actor=actor)


def spec_of(job: dict[str, Any]) -> JobSpec:
    """The JobSpec of a stored job."""
    return JobSpec(**{name: job[name] for name in _SPEC_FIELDS})


def update_job(db: Database, ref: str, changes: dict[str, Any], *, actor: str,
               expected_version: int | None = None, now: datetime | None = None
               ) -> dict[str, Any]:
    """Change a job's definition; the new schedule counts from now (the next fire)."""
    unknown = set(changes) - _SPEC_FIELDS
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))}")
    now = now or now_utc()
    with db.transaction() as conn:
        job = store.find(conn, ref)
        spec = replace(spec_of(job), **changes)
        spec, first = validate(spec, now=now)
        return store.replace(conn, job["id"], spec, first_fire=first, now=now,
                             expected_version=expected_version, actor=actor)


def pause_job(db: Database, ref: str, *, actor: str) -> dict[str, Any]:
    """Stop firing a job (runs already due are recorded as skipped: job paused)."""
    with db.transaction() as conn:
        return store.set_state(conn, store.find(conn, ref)["id"], "paused", actor=actor)


def resume_job(db: Database, ref: str, *, actor: str) -> dict[str, Any]:
    """Fire a paused job again; fire times missed while paused follow its misfire policy."""
    with db.transaction() as conn:
        return store.set_state(conn, store.find(conn, ref)["id"], "active", actor=actor)


def cancel_job(db: Database, ref: str, *, actor: str, notify: Notify) -> dict[str, Any]:
    """Cancel a job for good: pending runs are cancelled, running attempts stopped, and
    no copy of its runs already on its way to a worker starts (the durable cancellation,
    written in the same transaction)."""
    with db.transaction() as conn:
        job = store.set_state(conn, store.find(conn, ref)["id"], "cancelled", actor=actor)
        cancels.record(conn, "job", job["id"])
        conn.execute(
            "UPDATE runs SET state = 'cancelled', reason = 'job cancelled', "
            "finished_at = now(), updated_at = now() "
            "WHERE job_id = %s AND state IN ('scheduled', 'queued', 'retrying')", (job["id"],))
    notify(CancelMessage(run_id=None, job_id=job["id"], reason="job cancelled"))
    return job


def run_now(db: Database, ref: str, *, actor: str) -> dict[str, Any]:
    """Add a run of the job due now, besides its schedule."""
    with db.transaction() as conn:
        job = store.find(conn, ref)
        return store.run_now(conn, job["id"], now=now_utc(),
                             epoch=epochs.current(conn).epoch, actor=actor)


def cancel_run(db: Database, run_id: int, *, actor: str, notify: Notify) -> dict[str, Any]:
    """Cancel one run: pending, it never starts (a message already queued or waiting for
    its retry is dropped by the worker that receives it, by the durable cancellation
    recorded here); running, its attempt is stopped."""
    with db.transaction() as conn:
        before = conn.execute("SELECT state FROM runs WHERE id = %s FOR UPDATE",
                              (run_id,)).fetchone()
        if before is None:
            raise InvalidInput(f"no run with id {run_id}")
        row = conn.execute(
            "UPDATE runs SET state = 'cancelled', reason = 'cancelled by ' || %s, "
            "finished_at = now(), updated_at = now() WHERE id = %s "
            "AND state IN ('scheduled', 'queued', 'retrying') RETURNING *",
            (actor, run_id)).fetchone() or conn.execute(
            "SELECT * FROM runs WHERE id = %s", (run_id,)).fetchone()
        assert row is not None
        store.audit(conn, actor, "run.cancel", row["job_id"], {"run_id": run_id})
        in_flight = before["state"] in ("queued", "running", "retrying")
        if in_flight:  # a copy may be on its way to a worker (scheduled: none is yet)
            cancels.record(conn, "run", run_id)
    if in_flight:
        notify(CancelMessage(run_id=run_id, job_id=None, reason=f"cancelled by {actor}"))
    return row
