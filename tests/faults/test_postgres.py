"""The PostgreSQL primary killed under load and the synchronous standby promoted: the
daemons follow the new primary through the multi-host DSN, and no committed run is lost."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from common.devcluster.postgres import PostgresNode
from tests.faults.checker import Faults
from tests.faults.harness import FaultEnv, assert_clean, wait_for
from tests.faults.workload import phase

pytestmark = pytest.mark.timeout(300)


def test_killing_the_postgres_primary_and_promoting_the_standby_loses_nothing(
        fault_env: Callable[..., FaultEnv]) -> None:
    env = fault_env()
    with env.workload() as load:
        load.run_for(phase(8))
        primary = env.cluster.node("pg-primary")
        standby = env.cluster.node("pg-standby")
        assert isinstance(primary, PostgresNode) and isinstance(standby, PostgresNode)
        killed_at = time.time()
        primary.kill()
        load.run_for(phase(3))  # a real failover takes a moment to decide
        env.cluster.promote_standby()
        promoted = time.time() - killed_at
        wait_for(env.db.ping, 30, "the test's pool to reach the new primary")
        load.run_for(phase(12))
    report = env.verdict("PostgreSQL primary killed, standby promoted", load,
                         Faults(recovery_from=killed_at),
                         extra=f"standby promoted {promoted:.1f} s after the kill; "
                               "the old primary stays down")
    assert standby.in_recovery() is False
    assert_clean(report)
