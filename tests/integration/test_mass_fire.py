"""Thousands of jobs falling due together: the leader starts dispatching their runs
before it has recorded the last of them, and each still runs exactly once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bench import bulk
from bench.jobs import PYTHON_NOOP, at_spec
from common.db import Database
from common.devstack import Stack
from tests.integration.support import wait_for

pytestmark = pytest.mark.timeout(240)
COUNT = 5_000  # 10 of the recorder's batches: over a second of recording


def test_the_first_runs_of_a_mass_fire_are_dispatched_before_the_last_is_recorded(
        stack: Stack, db: Database) -> None:
    base = datetime.now(UTC).replace(microsecond=0)  # the fire time: due at once
    spec = at_spec("mass-fire", "python", dict(PYTHON_NOOP), base)
    inserted = bulk.insert(db, [bulk.Template(spec, COUNT)], base=base,
                           progress=lambda _line: None)
    ids = (inserted.first_id, inserted.last_id)

    def finished() -> dict[str, Any]:  # empty until every run succeeded
        with db.transaction() as conn:
            row = conn.execute(
                "SELECT count(*) AS runs, count(*) FILTER (WHERE state = 'succeeded') AS ok,"
                " count(DISTINCT job_id) AS jobs, min(queued_at) AS first_queued,"
                " max(created_at) AS last_recorded, max(finished_at) AS last_finished FROM runs"
                " WHERE job_id BETWEEN %s AND %s", ids).fetchone()
        assert row is not None
        return dict(row) if row["ok"] == COUNT else {}

    done = wait_for(finished, 180, f"{COUNT} runs to succeed")
    assert done["runs"] == COUNT and done["jobs"] == COUNT  # one run per job, no more
    first_queued, last_recorded = done["first_queued"], done["last_recorded"]
    assert isinstance(first_queued, datetime) and isinstance(last_recorded, datetime)
    print(f"after the fire time: first run queued {(first_queued - base).total_seconds():.2f}"
          f" s, last recorded {(last_recorded - base).total_seconds():.2f} s, last finished "
          f"{(done['last_finished'] - base).total_seconds():.2f} s")
    assert first_queued < last_recorded
