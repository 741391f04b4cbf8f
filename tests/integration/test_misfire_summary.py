"""A misfire pass too long to record fire by fire still leaves a row for every fire time."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from common import jobops
from common.db import Database
from common.devstack import Stack
from tests.integration.support import runs, wait_for

pytestmark = pytest.mark.timeout(120)
SUMMARY = re.compile(r"^misfire: (\d+) fires from (\S+) to (\S+) \(")


def test_more_than_a_thousand_misfires_leave_single_rows_then_one_summary_row(
        stack: Stack, db: Database) -> None:
    # Two hours of a per-second job missed (as after an outage), skipped by its policy.
    with db.transaction() as conn:
        job = conn.execute(
            "INSERT INTO jobs (name, job_type, payload, schedule_kind, schedule_expr, misfire,"
            " anchor_at, next_fire_at) VALUES ('two-hours-missed', 'shell', "
            "'{\"command\": \"true\"}', 'every', 'every 1 second', 'skip', "
            "date_trunc('second', now()) - interval '2 hours', "
            "date_trunc('second', now()) - interval '2 hours') RETURNING id, next_fire_at"
        ).fetchone()
    assert job is not None
    try:
        found = wait_for(lambda: [r for r in runs(db, job["id"]) if r["state"] != "skipped"],
                         30, "the misfires planned and the on-time runs recorded")
    finally:
        jobops.cancel_job(db, str(job["id"]), actor="test", notify=lambda _m: None)
    skipped = [r for r in runs(db, job["id"]) if r["state"] == "skipped"]
    start, second = job["next_fire_at"], timedelta(seconds=1)
    assert len(skipped) == 1000
    assert [r["scheduled_for"] for r in skipped] == [start + n * second for n in range(1000)]
    match = SUMMARY.match(skipped[-1]["reason"])
    assert match is not None, skipped[-1]["reason"]
    first, last = datetime.fromisoformat(match[2]), datetime.fromisoformat(match[3])
    assert first == skipped[-1]["scheduled_for"]
    assert int(match[1]) == (last - first) // second + 1 > 1
    # The fire after the summarised range is the first one recorded to run.
    assert min(r["scheduled_for"] for r in found) == last + second
