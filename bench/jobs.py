"""Creating benchmark jobs in bulk and watching their runs in the runs table.

Jobs go through the same validation and INSERT as `jobops.create_job` (`common.jobs.validate`
then `common.db.jobs.create`), several hundred per transaction so that creating 50,000 jobs
takes seconds, not minutes. Creation is never part of a measurement: every job has an `at`
time after the last one is stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from common.db import Database
from common.db import jobs as store
from common.jobs import JobSpec, validate

CHUNK = 500
FINAL_STATES = ("succeeded", "failed", "timed_out", "cancelled", "dead", "skipped")
PYTHON_NOOP: dict[str, Any] = {"entry_point": "example.sleep_echo"}
SHELL_NOOP: dict[str, Any] = {"command": "true"}


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def at_spec(name: str, job_type: str, payload: dict[str, Any], fire: datetime) -> JobSpec:
    """A one-off job firing at `fire` (ISO 8601 with microseconds, UTC); stored after that
    time (creation slowed by other load), it fires at once, and the caller warns."""
    return JobSpec(name=name, job_type=job_type, payload=payload, schedule_kind="at",
                   schedule_expr=fire.isoformat(timespec="microseconds"), allow_past=True)


@dataclass(frozen=True)
class Created:
    """Jobs created by one call: their id range (contiguous: the bench is the only writer)."""

    first_id: int
    last_id: int
    count: int
    seconds: float
    finished_at: datetime  # when the last job was stored

    @property
    def per_second(self) -> float:
        """Creation rate (for the record only, never a benchmark figure)."""
        return self.count / self.seconds if self.seconds > 0 else 0.0


def create_jobs(db: Database, specs: Sequence[JobSpec], *, progress: Callable[[str], None],
                chunk: int = CHUNK) -> Created:
    """Validate and store `specs`, `chunk` per transaction; report every few chunks."""
    began = time.monotonic()
    ids: list[int] = []
    last_report = began
    for start in range(0, len(specs), chunk):
        now = utcnow()
        with db.transaction() as conn:
            for spec in specs[start:start + chunk]:
                valid, first = validate(spec, now=now)
                job, _ = store.create(conn, valid, first_fire=first, now=now, actor="bench")
                ids.append(int(job["id"]))
        if time.monotonic() - last_report >= 2.0:
            progress(f"  created {len(ids):,}/{len(specs):,} jobs")
            last_report = time.monotonic()
    seconds = time.monotonic() - began
    if ids != list(range(ids[0], ids[0] + len(ids))):
        raise RuntimeError("job ids are not contiguous: is something else creating jobs?")
    return Created(ids[0], ids[-1], len(ids), seconds, utcnow())


def creation_rate(db: Database, *, progress: Callable[[str], None], count: int = 200) -> float:
    """Jobs/s this machine stores now, timed on `count` throw-away jobs that fire in a day
    (they stay active and never fire while the benchmark runs)."""
    later = utcnow() + timedelta(days=1)
    specs = [at_spec(f"bench-calibration-{n}", "python", PYTHON_NOOP, later)
             for n in range(count)]
    return create_jobs(db, specs, progress=progress).per_second


def creation_lead(count: int, per_second: float, *, floor: float = 5.0,
                  margin: float = 2.0) -> timedelta:
    """How far ahead to put the first fire so that creating `count` jobs ends before it:
    `margin` times the expected creation time at `per_second`, plus `floor` seconds."""
    return timedelta(seconds=floor + margin * count / max(per_second, 1.0))


@dataclass(frozen=True)
class Progress:
    """Runs of a job id range: how many exist and how many finished."""

    runs: int
    finished: int


def run_progress(db: Database, created: Created) -> Progress:
    """Count the runs of `created` and those with a final state."""
    with db.transaction() as conn:
        row = conn.execute(
            "SELECT count(*) AS runs, count(*) FILTER (WHERE state = ANY(%s)) AS finished "
            "FROM runs WHERE job_id BETWEEN %s AND %s",
            (list(FINAL_STATES), created.first_id, created.last_id)).fetchone()
    assert row is not None
    return Progress(int(row["runs"]), int(row["finished"]))


def wait_finished(db: Database, created: Created, *, timeout: float, stall: float,
                  progress: Callable[[str], None], every: float = 0.5,
                  report_every: float = 5.0) -> bool:
    """Poll until every job of `created` has a finished run; False after `timeout` seconds,
    or after `stall` seconds without any progress."""
    deadline = time.monotonic() + timeout
    last_change = last_report = time.monotonic()
    seen = -1
    while True:
        state = run_progress(db, created)
        now = time.monotonic()
        if state.finished != seen:
            seen, last_change = state.finished, now
        if state.finished >= created.count:
            progress(f"  waiting: {state.finished:,}/{created.count:,} done")
            return True
        if now - last_report >= report_every:
            progress(f"  waiting: {state.finished:,}/{created.count:,} done "
                     f"({state.runs:,} runs recorded)")
            last_report = now
        if now > deadline or now - last_change > stall:
            why = "timed out" if now > deadline else f"no progress for {stall:.0f} s"
            progress(f"  gave up waiting ({why}): {state.finished:,}/{created.count:,} done")
            return False
        time.sleep(every)


def runs_of(db: Database, created: Created) -> list[dict[str, Any]]:
    """Timing columns of every run of `created`."""
    with db.transaction() as conn:
        return conn.execute(
            "SELECT r.id, r.job_id, r.state, r.scheduled_for, r.due_at, r.queued_at, "
            "r.started_at, r.finished_at, r.attempt FROM runs r "
            "WHERE r.job_id BETWEEN %s AND %s ORDER BY r.id",
            (created.first_id, created.last_id)).fetchall()


def seconds_between(later: datetime | None, earlier: datetime | None) -> float | None:
    """(later - earlier) in seconds, None when either is missing."""
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds()
