"""One daemon cut off the network while it keeps running (proxies between it and the
services): the leader from ZooKeeper only, a worker from RabbitMQ only."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from tests.faults.checker import Faults
from tests.faults.harness import (
    SESSION_TIMEOUT,
    FaultEnv,
    assert_clean,
    busiest_worker,
    wait_for,
)
from tests.faults.workload import phase

pytestmark = pytest.mark.timeout(300)


def _epoch_row(env: FaultEnv) -> dict[str, object]:
    with env.db.transaction() as conn:
        row = conn.execute("SELECT * FROM cluster_epoch WHERE id = 1").fetchone()
    assert row is not None
    return dict(row)


def test_a_leader_cut_off_from_zookeeper_only_stops_dispatching_and_is_replaced(
        fault_env: Callable[..., FaultEnv]) -> None:
    env = fault_env(proxied=("schedulerd",))
    with env.workload() as load:
        load.run_for(phase(8))
        old = env.stack.wait_leader(5)
        old_epoch = int(str(_epoch_row(env)["epoch"]))
        cut_at = time.time()
        env.cut(old.name, "zookeeper")
        # The cut-off leader cannot learn that its session expired, so it may go on saying
        # "leader" on /health: look for the other one.
        new = wait_for(lambda: next((d for d in env.stack.schedulers
                                     if d is not old and d.role() == "leader"), None),
                       SESSION_TIMEOUT + 20, "another scheduler to lead")
        old_said = old.role()
        took_over = time.time() - cut_at
        load.run_for(max(0.0, cut_at + phase(12) - time.time()))
        healed_at = datetime.now(UTC)
        env.mend(old.name)
        wait_for(lambda: old.role() == "standby", 30, "the cut-off leader to step down")
        load.run_for(phase(10))
    epoch = _epoch_row(env)
    with env.db.transaction() as conn:
        late = conn.execute("SELECT count(*) AS n FROM runs WHERE epoch = %s AND queued_at > %s",
                            (old_epoch, epoch["since"])).fetchone()
    assert late is not None
    report = env.verdict("leader cut off from ZooKeeper", load, Faults(recovery_from=cut_at),
                         extra=f"{new.name} led {took_over:.1f} s after the cut; the old "
                               f"term dispatched {late['n']} runs after the new one began; "
                               f"healed at {healed_at:%H:%M:%S}; meanwhile the old "
                               f"leader's /health said {old_said!r}")
    assert int(str(epoch["epoch"])) > old_epoch and epoch["leader"] == new.name
    assert late["n"] == 0
    assert env.stack.leader() is new
    assert_clean(report)


def test_a_worker_cut_off_from_rabbitmq_has_its_runs_finished_or_retried_once(
        fault_env: Callable[..., FaultEnv]) -> None:
    env = fault_env(proxied=("workerd",))
    with env.workload() as load:
        load.run_for(phase(8))
        victim = busiest_worker(env)
        cut_at = time.time()
        env.cut(victim.name, "rabbitmq")
        # past RabbitMQ's heartbeat timeout, so the broker gives its deliveries away
        load.run_for(phase(25))
        env.mend(victim.name)
        wait_for(lambda: (victim.health() or {}).get("broker_connected"), 60,
                 f"{victim.name} to reconnect")
        load.run_for(phase(10))
    report = env.verdict("worker cut off from RabbitMQ", load,
                         Faults(lost_workers={victim.name: cut_at}, recovery_from=cut_at),
                         extra=f"{victim.name} cut off for {phase(25):.0f} s")
    assert_clean(report)
