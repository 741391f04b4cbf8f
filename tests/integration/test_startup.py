"""Daemons started while PostgreSQL and RabbitMQ refuse connections wait, say why, and
become ready when the services do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from common import jobops
from common.db import Database
from common.db.migrate import migrate
from common.devcluster import LocalCluster
from common.devstack import Stack
from tests.integration.support import SESSION_TIMEOUT, create, first_state, wait_for

pytestmark = pytest.mark.timeout(300)


def test_daemons_wait_for_refusing_services_and_become_ready_with_them(
        fresh_cluster: Callable[..., LocalCluster], tmp_path: Path) -> None:
    cluster = fresh_cluster(rabbit_nodes=1)
    migrate(cluster.settings.pg_dsn)
    services = [cluster.node("rabbit1"), cluster.node("pg-standby"), cluster.node("pg-primary")]
    for node in services:
        node.stop()
    stack = Stack(cluster, cluster.state_dir, schedulers=1, workers=1,
                  session_timeout=SESSION_TIMEOUT)
    stack.dir.mkdir(parents=True, exist_ok=True)
    scheduler, worker = stack.add("schedulerd", "sched-1"), stack.add("workerd", "worker-1")
    for daemon in (scheduler, worker):
        doc = wait_for(lambda d=daemon: d.health(), 30, f"{daemon.name} to answer /health")
        assert doc["ready"] is False
    wait_for(lambda: "unreachable" in str(scheduler.health()), 30, "the scheduler to say why")
    wait_for(lambda: "unreachable" in str(worker.health()), 30, "the worker to say why")
    assert scheduler.proc.is_running() and worker.proc.is_running()
    for node in reversed(services):
        node.start()
    for node in reversed(services):
        node.wait_ready(60)
    for daemon in (scheduler, worker):
        stack.wait_healthy(daemon, 90)
    stack.wait_leader(30)
    db = Database(cluster.settings.pg_dsn, max_size=1)
    try:
        job = create(db, "after-outage", command="true")
        wait_for(lambda: first_state(db, job["id"]) == "succeeded", 60, "a job to run")
        jobops.cancel_job(db, str(job["id"]), actor="test", notify=lambda _m: None)
    finally:
        db.close()
    for daemon in (scheduler, worker):
        assert "unexpected error, please report" not in daemon.proc.log_path.read_text()
