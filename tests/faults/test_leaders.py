"""The leading scheduler killed, terminated, frozen, and every scheduler restarted in turn,
all under load."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from common.db import Database
from common.db import epoch as epochs
from tests.faults.checker import Faults
from tests.faults.harness import SESSION_TIMEOUT, FaultEnv, assert_clean, wait_for
from tests.faults.workload import phase

pytestmark = pytest.mark.timeout(300)


def _epoch(db: Database) -> int:
    with db.transaction() as conn:
        return epochs.current(conn).epoch


def _burst_states(db: Database) -> dict[str, int]:
    with db.transaction() as conn:
        rows = conn.execute("SELECT r.state, count(*) AS n FROM runs r JOIN jobs j "
                            "ON j.id = r.job_id WHERE j.name LIKE 'wl-burst-%' "
                            "GROUP BY r.state").fetchall()
    return {r["state"]: int(r["n"]) for r in rows}


def _first_dispatch_after(db: Database, epoch: int) -> datetime | None:
    with db.transaction() as conn:
        row = conn.execute("SELECT min(queued_at) AS t FROM runs WHERE epoch > %s",
                           (epoch,)).fetchone()
    return None if row is None else row["t"]


def test_killing_the_leader_during_heavy_dispatch_loses_and_doubles_nothing(
        fault_env: Callable[..., FaultEnv]) -> None:
    env = fault_env()
    with env.workload() as load:
        load.run_for(phase(6))
        burst = load.burst(300, datetime.now(UTC) + timedelta(seconds=5), spread=3.0)
        wait_for(lambda: _burst_states(env.db).get("succeeded", 0) >= 60, 30,
                 "the burst to be under way")
        old = env.stack.wait_leader(5)
        old_epoch = _epoch(env.db)
        killed_at = time.time()
        old.proc.kill()
        new = env.stack.wait_leader(SESSION_TIMEOUT + 15, other_than=old)
        load.run_for(phase(5))
        old.proc.start()
        load.run_for(phase(10))
    first = _first_dispatch_after(env.db, old_epoch)
    takeover = None if first is None else first.timestamp() - killed_at
    report = env.verdict("leader SIGKILL under heavy dispatch", load,
                         Faults(recovery_from=killed_at),
                         extra=f"burst {burst} runs at "
                               f"{_burst_states(env.db)}; {new.name} dispatched "
                               f"{takeover:.2f} s after the kill")
    assert burst == 300
    assert takeover is not None and takeover < SESSION_TIMEOUT + 3
    assert_clean(report)


def test_a_terminated_leader_hands_over_at_once_and_loses_nothing(
        fault_env: Callable[..., FaultEnv]) -> None:
    env = fault_env()
    with env.workload() as load:
        load.run_for(phase(8))
        old = env.stack.wait_leader(5)
        began = time.monotonic()
        stopped_at = time.time()
        old.proc.signal(signal.SIGTERM)
        new = env.stack.wait_leader(10, other_than=old)
        handover = time.monotonic() - began
        wait_for(lambda: not old.proc.is_running(), 45, "the old leader to exit")
        old.proc.start()
        load.run_for(phase(10))
    report = env.verdict("leader SIGTERM (handover)", load, Faults(recovery_from=stopped_at),
                         extra=f"{old.name} -> {new.name} in {handover:.2f} s")
    assert handover < 2.0
    assert_clean(report)


def test_a_leader_frozen_past_its_session_is_fenced_after_it_resumes(
        fault_env: Callable[..., FaultEnv]) -> None:
    env = fault_env()
    with env.workload() as load:
        load.run_for(phase(8))
        old = env.stack.wait_leader(5)
        old_epoch = _epoch(env.db)
        paused_at = time.time()
        old.proc.pause()
        try:
            new = env.stack.wait_leader(SESSION_TIMEOUT + 15, other_than=old)
            load.run_for(max(0.0, paused_at + SESSION_TIMEOUT + 4 - time.time()))
        finally:
            resumed = datetime.now(UTC)
            old.proc.resume()
        wait_for(lambda: old.role() == "standby", 30, "the old leader to step down")
        load.run_for(phase(10))
    with env.db.transaction() as conn:
        late = conn.execute("SELECT count(*) AS n FROM runs WHERE epoch = %s AND "
                            "queued_at > %s", (old_epoch, resumed)).fetchone()
    assert late is not None
    report = env.verdict("leader SIGSTOP past its session, then SIGCONT", load,
                         Faults(recovery_from=paused_at),
                         extra=f"{new.name} took over; {late['n']} runs dispatched by the "
                               "old term after the resume")
    log = old.proc.log_path.read_text()
    assert late["n"] == 0
    assert env.stack.leader() is new
    assert "leader_session_lost" in log or "leader_fenced" in log
    assert_clean(report)


def test_restarting_every_scheduler_in_turn_under_load_loses_nothing(
        fault_env: Callable[..., FaultEnv]) -> None:
    env = fault_env()
    leader_restarted = 0.0
    with env.workload() as load:
        load.run_for(phase(6))
        order = sorted(env.stack.schedulers, key=lambda d: d.role() == "leader")
        for daemon in order:  # standbys first, the leader last, as an operator would
            leader_restarted = time.time()
            daemon.proc.restart()
            env.stack.wait_healthy(daemon, 60)
            env.stack.wait_leader(SESSION_TIMEOUT + 15)
            load.run_for(phase(3))
        load.run_for(phase(8))
    report = env.verdict("rolling restart of the schedulers", load,
                         Faults(recovery_from=leader_restarted),
                         extra=f"restarted {', '.join(d.name for d in order)}")
    assert_clean(report)
