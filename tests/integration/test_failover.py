"""Leader and worker failures on the shared stack: nothing lost, nothing doubled, fencing."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from common import jobops
from common.db import Database
from common.db import epoch as epochs
from common.devstack import Stack
from tests.integration.support import (
    SESSION_TIMEOUT,
    create,
    executions,
    first_state,
    heal,
    ledger_command,
    runs,
    states,
    wait_for,
)

pytestmark = pytest.mark.timeout(300)


def _epoch(db: Database) -> int:
    with db.transaction() as conn:
        return epochs.current(conn).epoch


def test_killing_the_leader_with_500_runs_due_loses_and_doubles_nothing(
        stack: Stack, db: Database, tmp_path: Path) -> None:
    book = tmp_path / "ledger"
    start = datetime.now(UTC) + timedelta(seconds=4)
    jobs = [create(db, f"due-{n}", command=ledger_command(book), kind="at",
                   expr=(start + timedelta(milliseconds=16 * n)).isoformat())["id"]
            for n in range(500)]
    old = stack.wait_leader(10)
    old_epoch = _epoch(db)
    wait_for(lambda: states(db, jobs)["succeeded"] >= 100, 30, "dispatch to be under way")
    killed_at = datetime.now(UTC)
    old.proc.kill()
    new = stack.wait_leader(SESSION_TIMEOUT + 10, other_than=old)
    wait_for(lambda: states(db, jobs)["succeeded"] == 500, 120, "all 500 runs to succeed")
    with db.transaction() as conn:
        first = conn.execute("SELECT min(queued_at) AS t FROM runs WHERE epoch > %s",
                             (old_epoch,)).fetchone()
    assert first is not None and first["t"] is not None
    takeover = (first["t"] - killed_at).total_seconds()
    counts = executions(book)
    print(f"runs checked 500, executed {len(counts)}, duplicated "
          f"{sum(1 for c in counts.values() if c > 1)}; {new.name} dispatched "
          f"{takeover:.2f} s after the kill (session timeout {SESSION_TIMEOUT} s)")
    assert len(counts) == 500 and set(counts.values()) == {1}
    assert takeover < SESSION_TIMEOUT + 1.0
    heal(stack)


def test_a_paused_leader_is_fenced_and_steps_down(stack: Stack, db: Database,
                                                  tmp_path: Path) -> None:
    old = stack.wait_leader(10)
    old_epoch = _epoch(db)
    old.proc.pause()
    try:
        new = stack.wait_leader(SESSION_TIMEOUT + 10, other_than=old)
        book = tmp_path / "while-paused"
        during = [create(db, f"paused-{n}", command=ledger_command(book))["id"]
                  for n in range(20)]
        wait_for(lambda: states(db, during)["succeeded"] == 20, 60, "the new leader's runs")
        assert _epoch(db) > old_epoch
    finally:
        resumed_at = datetime.now(UTC)
        old.proc.resume()
    after = [create(db, f"after-{n}", command=ledger_command(book))["id"] for n in range(20)]
    wait_for(lambda: states(db, after)["succeeded"] == 20, 60, "runs after the resume")
    wait_for(lambda: old.role() == "standby", 20, "the old leader to step down")
    with db.transaction() as conn:
        late = conn.execute("SELECT count(*) AS n FROM runs WHERE epoch = %s AND queued_at > %s",
                            (old_epoch, resumed_at)).fetchone()
    assert late is not None and late["n"] == 0
    assert stack.leader() is new
    assert set(executions(book).values()) == {1} and len(executions(book)) == 40
    log = old.proc.log_path.read_text()
    assert "leader_session_lost" in log or "leader_fenced" in log


def test_a_worker_killed_mid_run_has_the_attempt_retried_on_the_other_worker(
        stack: Stack, db: Database, tmp_path: Path) -> None:
    book = tmp_path / "ledger"
    job = create(db, "killed-worker", command=ledger_command(book, "sleep 4;"), max_attempts=2)
    running = wait_for(lambda: [r for r in runs(db, job["id"]) if r["state"] == "running"], 30,
                       "the attempt to run")[0]
    victim = next(d for d in stack.workers if d.name == running["worker"])
    victim.proc.kill()
    wait_for(lambda: first_state(db, job["id"]) == "succeeded", 60, "the retried attempt")
    with db.transaction() as conn:
        attempts = conn.execute("SELECT * FROM run_attempts WHERE run_id = %s ORDER BY attempt",
                                (running["id"],)).fetchall()
    print("attempts:", [(a["attempt"], a["worker"], a["state"]) for a in attempts])
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert attempts[0]["worker"] == victim.name and attempts[0]["state"] == "running"
    assert attempts[1]["worker"] != victim.name and attempts[1]["state"] == "succeeded"
    assert list(executions(book).values()) == [1]  # the killed attempt never reached its end
    heal(stack)


def test_a_terminated_leader_hands_over_within_a_second(stack: Stack, db: Database) -> None:
    old = stack.wait_leader(10)
    began = time.monotonic()
    old.proc.signal(signal.SIGTERM)
    new = stack.wait_leader(10, other_than=old)
    handover = time.monotonic() - began
    print(f"{old.name} -> {new.name} in {handover:.2f} s")
    assert handover < 1.0
    job = create(db, "after-handover", command="true")
    wait_for(lambda: first_state(db, job["id"]) == "succeeded", 30, "a run under the new leader")
    wait_for(lambda: not old.proc.is_running(), 30, "the old leader to exit")
    assert old.proc.returncode == 0
    heal(stack)


def test_without_a_zookeeper_quorum_nobody_dispatches_and_no_fire_is_lost(
        stack: Stack, db: Database, tmp_path: Path) -> None:
    book = tmp_path / "ledger"
    job = create(db, "through-zk-outage", command=ledger_command(book), kind="cron",
                 expr="* * * * * *")
    wait_for(lambda: sum(r["state"] == "succeeded" for r in runs(db, job["id"])) >= 2, 20,
             "the cron to fire")
    zk = [stack.cluster.node("zk2"), stack.cluster.node("zk3")]
    lost_at = datetime.now(UTC)
    for node in zk:
        node.stop()
    time.sleep(10)
    restored_at = datetime.now(UTC)
    for node in zk:
        node.start()
    for node in zk:
        node.wait_ready(60)
    time.sleep(8)
    jobops.cancel_job(db, str(job["id"]), actor="test", notify=lambda _m: None)
    history = runs(db, job["id"])
    # Nothing was published while there was no quorum (a batch in flight may finish).
    during = [r for r in history if r["queued_at"] is not None
              and lost_at + timedelta(seconds=1) < r["queued_at"] < restored_at]
    fires = [r["scheduled_for"] for r in history]
    gaps = [b - a for a, b in zip(fires, fires[1:], strict=False) if b - a != timedelta(seconds=1)]
    late = [r for r in history if lost_at < r["scheduled_for"] < restored_at]
    print(f"{len(history)} fires, {len(during)} published during the outage, gaps {gaps}, "
          f"{len(late)} fires fell in the outage: "
          f"{sorted({r['state'] for r in late})}")
    assert during == []
    assert gaps == []
    assert late and all(r["state"] in ("succeeded", "cancelled") for r in late)
    assert set(executions(book).values()) == {1}
    heal(stack)
