"""ZooKeeper nodes lost under load: one (nothing happens), then two (no quorum: dispatch
stops, and resumes with the misfire policies applied when they return)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from common.devcluster.zookeeper import ZooKeeperNode, server_mode
from tests.faults.checker import Faults
from tests.faults.harness import SESSION_TIMEOUT, FaultEnv, assert_clean
from tests.faults.workload import phase

pytestmark = pytest.mark.timeout(300)


def _zk_nodes(env: FaultEnv) -> list[ZooKeeperNode]:
    nodes = [n for n in env.cluster.nodes.values() if isinstance(n, ZooKeeperNode)]
    # the ensemble's leader first: losing it is the harder case
    return sorted(nodes, key=lambda n: server_mode(n.ports["client"]) != "leader")


def _epoch(env: FaultEnv) -> int:
    with env.db.transaction() as conn:
        row = conn.execute("SELECT epoch FROM cluster_epoch WHERE id = 1").fetchone()
    assert row is not None
    return int(row["epoch"])


def test_losing_one_zookeeper_node_changes_nothing(
        fault_env: Callable[..., FaultEnv]) -> None:
    env = fault_env()
    with env.workload() as load:
        load.run_for(phase(8))
        leader, epoch = env.stack.wait_leader(5), _epoch(env)
        victim = _zk_nodes(env)[0]
        killed_at = time.time()
        victim.kill()
        load.run_for(phase(8))
        victim.start()
        victim.wait_ready(60)
        load.run_for(phase(8))
    report = env.verdict("one ZooKeeper node killed", load, Faults(recovery_from=killed_at),
                         extra=f"killed {victim.name} (the ensemble's leader); scheduler "
                               f"leader {leader.name}, epoch unchanged: "
                               f"{_epoch(env) == epoch}")
    assert env.stack.leader() is leader
    assert _epoch(env) == epoch
    assert_clean(report)


def test_without_a_zookeeper_quorum_dispatch_stops_and_resumes_under_the_misfire_policy(
        fault_env: Callable[..., FaultEnv]) -> None:
    env = fault_env()
    with env.workload() as load:
        load.run_for(phase(8))
        victims = _zk_nodes(env)[:2]
        lost_at = datetime.now(UTC)
        for node in victims:
            node.kill()
        load.run_for(phase(12))
        restored_at = datetime.now(UTC)
        for node in victims:
            node.start()
        for node in victims:
            node.wait_ready(60)
        back = time.time()
        env.stack.wait_leader(SESSION_TIMEOUT + 30)
        load.run_for(phase(10))
    with env.db.transaction() as conn:
        during = conn.execute(
            "SELECT count(*) AS n FROM runs WHERE queued_at > %s AND queued_at < %s",
            (lost_at + timedelta(seconds=1.5), restored_at)).fetchone()
    assert during is not None
    report = env.verdict(
        "two ZooKeeper nodes killed", load, Faults(recovery_from=back),
        extra=f"{during['n']} runs dispatched during the outage of "
              f"{(restored_at - lost_at).total_seconds():.1f} s; recovery counted from the "
              "quorum's return")
    # The three late-* jobs share one schedule, so they have the same fires from the outage
    # to the end: skip runs none of the late ones, fire_once one, fire_all every one.
    with env.db.transaction() as conn:
        rows = conn.execute(
            "SELECT j.misfire, count(*) FILTER (WHERE r.reason LIKE 'misfire%%') AS skipped, "
            "count(*) FILTER (WHERE r.state = 'succeeded') AS ran FROM runs r "
            "JOIN jobs j ON j.id = r.job_id WHERE j.name LIKE 'wl-late-%%' "
            "AND r.scheduled_for BETWEEN %s AND %s GROUP BY j.misfire",
            (lost_at, load.ended)).fetchall()
    policy = {r["misfire"]: (int(r["skipped"]), int(r["ran"])) for r in rows}
    print(f"misfire policies from the outage on (skipped, ran): {policy}")
    assert during["n"] == 0
    assert policy["skip"][0] > 1
    assert policy["fire_once"] == (policy["skip"][0] - 1, policy["skip"][1] + 1)
    assert policy["fire_all"] == (0, sum(policy["skip"]))
    assert_clean(report)
