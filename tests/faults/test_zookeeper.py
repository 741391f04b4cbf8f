"""ZooKeeper nodes lost under load: one (nothing happens), then two (no quorum: dispatch
stops, and resumes with the misfire policies applied when they return); a worker whose
session expires under a `forbid` attempt stops it before another worker can take over."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from common import jobops
from common.devcluster.zookeeper import ZooKeeperNode, server_mode
from common.jobs import JobSpec
from common.states import FINAL
from schedctl.services import Broadcast
from tests.faults.checker import Faults
from tests.faults.harness import SESSION_TIMEOUT, FaultEnv, assert_clean
from tests.faults.workload import phase
from tests.integration.support import runs, wait_for
from workerd.attempt import FENCED

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
    # Claims (a run's first copy of its first attempt) are the leader's dispatch, which the
    # lease stops. A later copy made meanwhile is a status consumer settling a run a worker
    # gave back unstarted (it could not read its job's lock): not fenced by ZooKeeper, and
    # guarded by the copy number.
    with env.db.transaction() as conn:
        during = conn.execute(
            "SELECT count(*) AS n FROM runs WHERE queued_at > %s AND queued_at < %s "
            "AND attempt = 1 AND dispatch = 1",
            (lost_at + timedelta(seconds=1.5), restored_at)).fetchone()
    assert during is not None
    report = env.verdict(
        "two ZooKeeper nodes killed", load, Faults(recovery_from=back),
        extra=f"{during['n']} runs claimed during the outage of "
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


SPAN_COMMAND = (
    # One file per attempt and process: its start, and its end, also when it is stopped.
    'f={book}/"$ZEITPLAN_RUN_ID.$ZEITPLAN_ATTEMPT.$$"; echo "$EPOCHREALTIME" > "$f"; '
    "trap 'echo \"$EPOCHREALTIME stopped\" >> \"$f\"; exit 143' TERM; "
    'sleep 8 & wait $!; echo "$EPOCHREALTIME" >> "$f"')


def _spans(book: Path) -> list[tuple[float, float, str]]:
    """(start, end, run.attempt) of every execution; each must have recorded its end."""
    spans = []
    for path in book.iterdir():
        lines = path.read_text().split("\n")
        assert len(lines) >= 2 and lines[1], f"execution {path.name} never recorded its end"
        spans.append((float(lines[0]), float(lines[1].split()[0]), path.name))
    return sorted(spans)


def _running(env: FaultEnv, job_id: int, *, not_on: str | None = None) -> dict[str, Any]:
    """A running run of the job (on another worker than `not_on`), once there is one."""
    def probe() -> dict[str, Any] | None:
        return next((r for r in runs(env.db, job_id) if r["state"] == "running"
                     and r["worker"] != not_on), None)
    found = wait_for(probe, 30, f"an attempt running on a worker other than {not_on}")
    assert found is not None
    return found


def test_a_worker_whose_session_expires_stops_its_forbid_attempt_before_another_takes_over(
        fault_env: Callable[..., FaultEnv]) -> None:
    env = fault_env(proxied=("workerd",))
    book = env.dir / "spans"
    book.mkdir()
    book.chmod(0o777)
    job, _ = jobops.create_job(env.db, JobSpec(
        name="zk-forbid", job_type="shell",
        payload={"argv": ["/bin/bash", "-c", SPAN_COMMAND.format(book=book)]},
        schedule_kind="every", schedule_expr="every 2s", concurrency="forbid",
        max_attempts=1), actor="test")
    first = _running(env, job["id"])
    victim = first["worker"]
    env.cut(victim, "zookeeper")  # silence: its session expires SESSION_TIMEOUT later
    _running(env, job["id"], not_on=victim)
    env.mend(victim)
    jobops.cancel_job(env.db, str(job["id"]), actor="test",
                      notify=Broadcast(list(env.cluster.settings.amqp_urls)))
    wait_for(lambda: all(r["state"] in FINAL for r in runs(env.db, job["id"])), 30,
             "every run of the job to end")
    with env.db.transaction() as conn:
        stopped = conn.execute("SELECT r.state, a.error FROM runs r JOIN run_attempts a "
                               "ON a.run_id = r.id WHERE r.id = %s",
                               (first["id"],)).fetchone()
    spans = _spans(book)
    origin = spans[0][0]
    print(f"executions (start, end, run.attempt.pid): "
          f"{[(round(s - origin, 2), round(e - origin, 2), n) for s, e, n in spans]}; "
          f"the cut-off worker's run: {stopped}")
    latest_end = 0.0
    for start_at, end_at, name in spans:
        assert start_at >= latest_end, f"{name} started while another execution ran"
        latest_end = max(latest_end, end_at)
    assert any(name.startswith(f"{first['id']}.1.") for _, _, name in spans)
    assert stopped is not None and stopped["state"] == "dead" and stopped["error"] == FENCED
