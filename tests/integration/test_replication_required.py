"""A scheduler refuses to lead on a PostgreSQL whose commits are not replicated
synchronously, says why in its log and /health, and leads on one anyway only when
`database.allow_async_replication` accepts the risk. (The shared cluster's PostgreSQL has a
synchronous standby: every other integration test leads on it.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from common.db import connect_once
from common.db.migrate import migrate
from common.devcluster import LocalCluster
from common.devstack import Daemon, Stack
from tests.integration.support import SESSION_TIMEOUT, wait_for

pytestmark = pytest.mark.timeout(240)


def refusal(daemon: Daemon, setting: str) -> str:
    """Wait until `daemon` says in /health that it refuses to lead because of `setting`."""
    def refusing() -> dict[str, Any] | None:
        doc = daemon.health()
        return doc if doc and setting in str(doc.get("reason")) else None

    doc = wait_for(refusing, 30, f"{daemon.name} to refuse to lead over {setting}")
    assert doc is not None and doc["ready"] is False and doc["role"] == "standby"
    return str(doc["reason"])


def test_a_scheduler_refuses_to_lead_without_synchronous_replication_unless_allowed(
        fresh_cluster: Callable[..., LocalCluster]) -> None:
    cluster = fresh_cluster(zk_nodes=1, rabbit_nodes=1, pg_standby=False)
    dsn = cluster.settings.pg_dsn
    migrate(dsn)
    stack = Stack(cluster, cluster.state_dir, schedulers=0, workers=0,
                  session_timeout=SESSION_TIMEOUT)
    stack.dir.mkdir(parents=True, exist_ok=True)

    # No synchronous standby named: no lead, and the log line says what to change.
    strict = stack.add("schedulerd", "strict")
    assert refusal(strict, "synchronous_standby_names").startswith("refusing to lead: ")
    log = strict.proc.log_path.read_text()
    assert "replication_unsafe" in log and "allow_async_replication" in log
    assert "leader_elected" not in log

    # The same database with the risk accepted: it leads.
    stack.extra = {"schedulerd": {"database": {"allow_async_replication": True}}}
    accepting = stack.add("schedulerd", "accepting")
    assert stack.wait_leader(30) is accepting
    assert "replication_risk_accepted" in accepting.proc.log_path.read_text()
    assert strict.role() == "standby" and "leader_elected" not in strict.proc.log_path.read_text()
    accepting.proc.stop()
    strict.proc.stop()

    # A standby named, but sessions that commit without waiting for it.
    with connect_once(dsn) as conn:
        conn.execute("ALTER SYSTEM SET synchronous_standby_names = 'replica9'")
        conn.execute("SELECT pg_reload_conf()")
    stack.extra = {"schedulerd": {"database": {
        "dsn": f"{dsn} options='-c synchronous_commit=local'"}}}
    local = stack.add("schedulerd", "local-commit")
    assert "synchronous_commit is local" in refusal(local, "synchronous_commit")
    assert "leader_elected" not in local.proc.log_path.read_text()
