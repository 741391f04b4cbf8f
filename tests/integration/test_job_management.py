"""Job management on the running stack: pause, resume, update, run now, auto-pause."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from common import jobops
from common.db import Database
from common.devstack import Stack
from schedctl.services import Broadcast
from tests.integration.support import create, ledger, ledger_command, runs, wait_for

pytestmark = pytest.mark.timeout(180)


def _job(db: Database, job_id: int) -> dict[str, object]:
    with db.transaction() as conn:
        row = conn.execute("SELECT * FROM jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return row


def test_a_paused_job_does_not_fire_and_resuming_catches_up_once(stack: Stack, db: Database,
                                                                  tmp_path: Path) -> None:
    book = tmp_path / "ledger"
    job = create(db, "pausable", command=ledger_command(book), kind="cron", expr="* * * * * *",
                 misfire_grace_s=1.0)
    wait_for(lambda: sum(r["state"] == "succeeded" for r in runs(db, job["id"])) >= 2, 20,
             "two fires")
    jobops.pause_job(db, str(job["id"]), actor="test")
    paused_at = time.time()
    time.sleep(8)
    fired_while_paused = [r for r in runs(db, job["id"]) if r["started_at"] is not None
                          and r["started_at"].timestamp() > paused_at + 0.5]
    assert fired_while_paused == []
    jobops.resume_job(db, str(job["id"]), actor="test")
    resumed_at = time.time()
    time.sleep(4)
    jobops.cancel_job(db, str(job["id"]), actor="test", notify=lambda _m: None)
    history = runs(db, job["id"])
    skipped = [r for r in history if r["state"] == "skipped"]
    assert skipped, "the fires missed while paused leave skipped runs"
    assert all(r["reason"].startswith(("misfire", "job paused")) for r in skipped)
    catch_up = [r for r in history if r["state"] == "succeeded"
                and paused_at + 1 < r["scheduled_for"].timestamp() < resumed_at - 1]
    assert len(catch_up) <= 1  # fire_once: at most one catch-up run for the paused stretch


def test_an_update_takes_effect_from_the_next_fire_and_run_now_adds_a_run(
        stack: Stack, db: Database, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    job = create(db, "updatable", command=ledger_command(first), kind="every",
                 expr="every 1 hour")
    wait_for(lambda: first.exists(), 20, "the first fire")
    updated = jobops.update_job(db, str(job["id"]), {"payload": {
        "command": ledger_command(second)}}, actor="test", expected_version=job["version"])
    assert updated["version"] == job["version"] + 1
    run = jobops.run_now(db, str(job["id"]), actor="test")
    wait_for(lambda: second.exists(), 20, "the run-now run with the new command")
    assert run["trigger"] == "manual"
    with pytest.raises(Exception, match="changed meanwhile"):
        jobops.update_job(db, str(job["id"]), {"priority": 9}, actor="test",
                          expected_version=job["version"])


def test_a_job_that_asks_for_it_is_paused_after_consecutive_dead_runs(
        stack: Stack, db: Database) -> None:
    job = create(db, "gives-up", command="exit 1", kind="every", expr="every 1 second",
                 pause_after_failures=3)
    wait_for(lambda: _job(db, job["id"])["state"] == "paused", 30, "the job to pause itself")
    dead = [r for r in runs(db, job["id"]) if r["state"] == "dead"]
    assert len(dead) >= 3
    assert _job(db, job["id"])["consecutive_failures"] >= 3


def test_cancelling_a_run_waiting_for_its_retry_stops_further_attempts(
        stack: Stack, db: Database, tmp_path: Path) -> None:
    book = tmp_path / "ledger"
    job = create(db, "cancel-retry", command=ledger_command(book) + "; exit 1",
                 max_attempts=3, backoff_base_s=3.0)
    run = wait_for(lambda: [r for r in runs(db, job["id"]) if r["state"] == "retrying"], 30,
                   "the first attempt to fail")[0]
    jobops.cancel_run(db, run["id"], actor="test",
                      notify=Broadcast(list(stack.cluster.settings.amqp_urls)))
    time.sleep(8)
    with db.transaction() as conn:
        attempts = conn.execute("SELECT attempt FROM run_attempts WHERE run_id = %s",
                                (run["id"],)).fetchall()
    assert [a["attempt"] for a in attempts] == [1]
    assert runs(db, job["id"])[0]["state"] == "cancelled"
    assert len(ledger(book)) == 1  # the retry never executed
