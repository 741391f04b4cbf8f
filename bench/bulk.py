"""Set-up only: store 100,000s of jobs with COPY, as `jobops.create_job` would store them.

`jobops.create_job` validates a spec, then INSERTs one row into `jobs` and one `job.create`
row into `audit_log`, one transaction per job: far too slow for a million jobs. Here every
distinct job (a `Template`: one schedule, one payload) goes through `common.jobs.validate`
once, and its copies are COPYed with exactly the columns `common.db.jobs.create` writes
(the spec's fields, `anchor_at`, `next_fire_at`, `state`); their audit rows follow in one
INSERT ... SELECT. Each copy gets its own creation instant (`anchor_at`), as jobs created
one by one would, so the leader's parsed-schedule cache sees as many distinct jobs as it
would in production. A sample of copies is validated on its own to prove that its stored
`next_fire_at` is the one `validate` gives for its own instant. Paused jobs are stored as
`set_state` leaves them (state `paused`, version 2, a `job.pause` audit row).

This writes the database directly and is never part of a measurement.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from common.db import Database
from common.jobs import JobSpec, validate

SPEC_COLUMNS = tuple(name for name in JobSpec.__dataclass_fields__ if name != "allow_past")
COLUMNS = (*SPEC_COLUMNS, "anchor_at", "next_fire_at", "state", "version")
CHUNK = 50_000          # rows per COPY transaction
SAMPLE_EVERY = 997      # copies checked one by one against `validate`
# Copy n was "created" (1 + n % SPREAD_US) microseconds before the templates' instant:
# distinct instants within the second before it, so that a schedule firing on whole
# seconds at or after that instant has the same first fire for every copy.
SPREAD_US = 900_000


@dataclass(frozen=True)
class Template:
    """`count` jobs named `<spec.name>-<n>`, otherwise equal to `spec`."""

    spec: JobSpec
    count: int
    paused: bool = False


@dataclass(frozen=True)
class Inserted:
    """What `insert` stored: the id range (contiguous: the benchmark is the only writer)."""

    first_id: int
    last_id: int
    count: int
    seconds: float
    finished_at: datetime

    @property
    def per_second(self) -> float:
        """Rows per second (for the record; never a benchmark figure)."""
        return self.count / self.seconds if self.seconds > 0 else 0.0


def spread(count: int, parts: int) -> list[int]:
    """`count` split into `parts` near-equal non-negative shares (the first ones larger)."""
    if parts <= 0:
        raise ValueError("parts must be positive")
    base, extra = divmod(count, parts)
    return [base + (1 if n < extra else 0) for n in range(parts)]


def created_at(base: datetime, n: int) -> datetime:
    """The creation instant given to copy `n` (just before `base`, distinct per copy)."""
    return base - timedelta(microseconds=1 + n % SPREAD_US)


def rows(template: Template, start: int, base: datetime) -> Iterator[tuple[Any, ...]]:
    """The COPY rows of `template`'s copies, numbered from `start`; the template is
    validated at `base` (a whole second), each copy stamped with its own instant."""
    if base.microsecond:
        raise ValueError("base must be a whole second")
    spec, first = validate(template.spec, now=base)
    values = asdict(spec)
    values["payload"] = json.dumps(values["payload"])
    fixed = [values[c] for c in SPEC_COLUMNS]
    name_at = SPEC_COLUMNS.index("name")
    state = "completed" if first is None else "paused" if template.paused else "active"
    version = 2 if template.paused else 1
    for n in range(start, start + template.count):
        fixed[name_at] = f"{spec.name}-{n}"
        now = created_at(base, n)
        if n % SAMPLE_EVERY == 0:
            _check(template.spec, fixed[name_at], now, first)
        yield (*fixed, now, first, state, version)


def _check(spec: JobSpec, name: str, now: datetime, first: datetime | None) -> None:
    _, own = validate(replace(spec, name=name), now=now)
    if own != first:
        raise RuntimeError(f"{name}: validate gives next_fire_at {own} for its own creation "
                           f"instant {now}, not {first}: choose another base time")


def insert(db: Database, templates: Sequence[Template], *, base: datetime,
           progress: Callable[[str], None]) -> Inserted:
    """COPY every template's copies into `jobs`, CHUNK rows per transaction, then add the
    audit rows `jobs.create` (and `jobs.set_state` for paused jobs) would have added."""
    began = time.monotonic()
    total = sum(t.count for t in templates)
    stream = _all_rows(templates, base)
    with db.transaction() as conn:
        before = conn.execute("SELECT coalesce(max(id), 0) AS id FROM jobs").fetchone()
    assert before is not None
    stored = 0
    last_report = began
    while stored < total:
        sql = f"COPY jobs ({', '.join(COLUMNS)}) FROM STDIN"
        with db.transaction() as conn, conn.cursor().copy(sql) as copy:
            for _ in range(min(CHUNK, total - stored)):
                copy.write_row(next(stream))
                stored += 1
        if time.monotonic() - last_report >= 5.0:
            progress(f"  stored {stored:,}/{total:,} jobs")
            last_report = time.monotonic()
    with db.transaction() as conn:
        row = conn.execute("SELECT min(id) AS first, max(id) AS last, count(*) AS n "
                           "FROM jobs WHERE id > %s", (before["id"],)).fetchone()
        assert row is not None
        first_id, last_id = int(row["first"]), int(row["last"])
        if int(row["n"]) != total or last_id - first_id + 1 != total:
            raise RuntimeError(f"stored {row['n']} jobs with ids {first_id}..{last_id}, "
                               f"expected {total} contiguous ones: is something else writing?")
        conn.execute(
            "INSERT INTO audit_log (actor, action, job_id, details) "
            "SELECT 'bench', 'job.create', id, jsonb_build_object('name', name) FROM jobs "
            "WHERE id BETWEEN %s AND %s", (first_id, last_id))
        conn.execute(
            "INSERT INTO audit_log (actor, action, job_id, details) "
            "SELECT 'bench', 'job.pause', id, '{}' FROM jobs "
            "WHERE id BETWEEN %s AND %s AND state = 'paused'", (first_id, last_id))
        # Planner statistics, as autovacuum would have gathered while jobs trickled in.
        conn.execute("ANALYZE jobs")
    seconds = time.monotonic() - began
    return Inserted(first_id, last_id, total, seconds, datetime.now(base.tzinfo))


def _all_rows(templates: Sequence[Template], base: datetime) -> Iterator[tuple[Any, ...]]:
    start = 0
    for template in templates:
        yield from rows(template, start, base)
        start += template.count
