"""A worker's complete heartbeat lists everything it executes, after every outcome it
published: an attempt that the database has running on that worker, that started before
the heartbeat and that the heartbeat leaves out, was given up there and gets the next
attempt at once (nothing waits for the worker to be declared lost)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from common.db import Database
from common.devstack import Stack
from common.messages import HeartbeatMessage, LogMessage
from tests.integration.support import (
    create,
    ledger,
    ledger_command,
    logged,
    report,
    runs,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)


def test_an_attempt_left_out_of_its_workers_heartbeat_gets_the_next_attempt(
        stack: Stack, db: Database, tmp_path: Path) -> None:
    book = tmp_path / "ledger"
    job = create(db, "given-up", command=ledger_command(book, "sleep 4;"), max_attempts=3)
    row = wait_for(lambda: (r := runs(db, job["id"])) and r[0]["state"] == "running" and r[0],
                   20, "the first attempt to run")
    run_id, worker, started = row["id"], row["worker"], row["started_at"]
    # Neither a heartbeat from before the start nor one that does not claim to be complete
    # says anything about the attempt; a log chunk behind them marks them as consumed.
    report(stack,
           HeartbeatMessage(worker, started - timedelta(seconds=1), (), complete=True),
           HeartbeatMessage(worker, datetime.now(UTC), (), complete=False),
           HeartbeatMessage("another-worker", datetime.now(UTC), (), complete=True),
           LogMessage(run_id, 1, "stdout", 900, b"marker\n"))
    wait_for(lambda: logged(db, run_id, 900), 10, "the status consumer to reach the marker")
    assert runs(db, job["id"])[0]["attempt"] == 1
    report(stack, HeartbeatMessage(worker, datetime.now(UTC), (), complete=True))
    moved = wait_for(lambda: (r := runs(db, job["id"])[0])["attempt"] == 2 and r, 10,
                     "the next attempt")
    assert moved["error"] == f"attempt given up by {worker}"
    done = wait_for(lambda: (r := runs(db, job["id"])[0])["state"] == "succeeded" and r, 30,
                    "the run to finish")
    assert done["attempt"] == 2
    # Attempt 1 really ran on (this test only pretended its worker gave it up), then 2 once.
    assert sorted(attempt for run, attempt, _, _ in ledger(book) if run == run_id) == [1, 2]
