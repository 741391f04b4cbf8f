"""The leading scheduler killed, terminated, frozen, and every scheduler restarted in turn,
all under load; killed or terminated while a pool is far behind; killed between claim and
publish by two terms in a row."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

from common.db import Database
from common.db import epoch as epochs
from tests.faults.checker import Faults
from tests.faults.harness import SESSION_TIMEOUT, FaultEnv, assert_clean, wait_for
from tests.faults.workload import Workload, phase

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


def _copies(db: Database, role: str) -> list[dict[str, object]]:
    """State, epoch and dispatch numbers of the runs of workload role `role`."""
    with db.transaction() as conn:
        rows: list[dict[str, object]] = conn.execute(
            "SELECT r.id, r.state, r.epoch, r.dispatch, r.published_dispatch FROM runs r "
            "JOIN jobs j ON j.id = r.job_id WHERE j.name ~ %s",
            (f"^wl-{re.escape(role)}-[0-9]+$",)).fetchall()
    return rows


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


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "terminated"])
def test_a_leader_gone_right_after_dispatching_a_backlog_sends_no_run_twice(
        fault_env: Callable[..., FaultEnv], sig: signal.Signals) -> None:
    # 120 one-second jobs due at once on 4 slots: the pool is ~30 s behind, so most runs
    # still wait in a queue or a worker's prefetch when the next term's grace is over.
    env = fault_env(workers=2, worker_slots=2)
    grace = 10.0  # leader.orphan_grace (the default)
    with env.workload(steady=False) as load:
        made = load.burst(120, datetime.now(UTC) + timedelta(seconds=8), 0.0, role="burst-1s")
        old = env.stack.wait_leader(5)
        wait_for(lambda: _dispatched(env.db, "burst-1s", 120), 30, "the burst's dispatch",
                 every=0.02)
        gone_at = time.time()
        old.proc.signal(sig)
        new = env.stack.wait_leader(SESSION_TIMEOUT + 15, other_than=old)
        load.run_for(grace + 2)  # the new term's first sweep is over
        waiting = sum(r["state"] == "queued" for r in _copies(env.db, "burst-1s"))
        wait_for(lambda: not old.proc.is_running(), 45, "the old leader to exit")
        old.proc.start()
    report = env.verdict(f"leader {sig.name} right after dispatching a backlog", load,
                         Faults(recovery_from=gone_at), settle_timeout=90,
                         extra=f"{old.name} -> {new.name}; {waiting} runs still queued "
                               "after the new term's grace")
    assert made == 120
    assert waiting > 0, "the backlog was gone before the new term's sweep"
    assert_clean(report, min_runs=120)


def _dispatched(db: Database, role: str, count: int) -> bool:
    """All `count` runs of `role` were published and RabbitMQ's confirms recorded."""
    rows = _copies(db, role)
    return len(rows) == count and all(
        r["state"] != "scheduled" and r["published_dispatch"] == r["dispatch"] for r in rows)


def _claimed_by(db: Database, role: str, count: int, epoch: int) -> bool:
    """All `count` runs of `role` are queued, as first copies, by term `epoch`."""
    rows = _copies(db, role)
    return len(rows) == count and all(
        r["state"] == "queued" and r["epoch"] == epoch and r["dispatch"] == 1 for r in rows)


def _publishing(env: FaultEnv, load: Workload) -> int:
    """Wait until the leader publishes (a probe run due now has run); its epoch."""
    job = load.create("at", datetime.now(UTC) + timedelta(seconds=0.5))

    def ran() -> int | None:
        with env.db.transaction() as conn:
            row = conn.execute("SELECT epoch FROM runs WHERE job_id = %s AND state = "
                               "'succeeded'", (job,)).fetchone()
        return None if row is None else int(row["epoch"])
    epoch = wait_for(ran, 20, "the leader to publish")
    assert epoch is not None
    return epoch


def test_two_leaders_killed_between_claim_and_publish_within_the_grace_lose_nothing(
        fault_env: Callable[..., FaultEnv]) -> None:
    # Each leader's RabbitMQ path is cut before a burst comes due: it claims the runs (the
    # database is reachable) but no publish is ever confirmed, and it is killed. The second
    # dies before its sweep could run; the third, healthy, publishes both terms' runs.
    env = fault_env(proxied=("schedulerd",),
                    extra={"schedulerd": {"leader": {"orphan_grace": 15.0}}})
    killed: list[str] = []
    epochs_cut: list[int] = []
    with env.workload(steady=False) as load:
        previous = None
        for term, role in enumerate(("burst", "burst-1s")):
            leader = env.stack.wait_leader(SESSION_TIMEOUT + 15, other_than=previous)
            epoch = _publishing(env, load)
            assert epoch == _epoch(env.db), "the probe run was published by an older term"
            env.cut(leader.name, "rabbitmq")
            load.burst(40, datetime.now(UTC) + timedelta(seconds=3), 0.0, role=role)
            wait_for(partial(_claimed_by, env.db, role, 40, epoch), 20,
                     f"term {term + 1}'s claim of the burst")
            epochs_cut.append(epoch)
            leader.proc.kill()
            env.cut(leader.name, "rabbitmq", "drop")  # what the proxy holds dies with it
            killed.append(leader.name)
            previous = leader
        untouched = _claimed_by(env.db, "burst", 40, epochs_cut[0])
        healthy = env.stack.wait_leader(SESSION_TIMEOUT + 15, other_than=previous)
        for name in killed:
            env.mend(name)
            env.daemon(name).proc.start()
        load.run_for(phase(15))
    report = env.verdict("two leaders killed between claim and publish", load,
                         Faults(), settle_timeout=60,
                         extra=f"killed {', '.join(killed)}; {healthy.name} took over")
    # The second term never swept the first's runs: both deaths fell within the grace.
    assert untouched
    assert_clean(report, min_runs=82)
