"""A worker killed with runs in flight (for one cut off the network, see test_partitions)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.faults.checker import Faults, retry_latency
from tests.faults.harness import FaultEnv, assert_clean, busiest_worker
from tests.faults.workload import phase

pytestmark = pytest.mark.timeout(300)


def test_a_worker_killed_with_runs_in_flight_has_them_retried_and_loses_nothing(
        fault_env: Callable[..., FaultEnv]) -> None:
    env = fault_env()
    with env.workload() as load:
        load.run_for(phase(8))
        victim = busiest_worker(env)
        killed_at = time.time()
        victim.proc.kill()
        load.run_for(phase(6))
        victim.proc.start()
        env.stack.wait_healthy(victim, 60)
        load.run_for(phase(10))
    report = env.verdict("worker SIGKILL", load,
                         Faults(lost_workers={victim.name: killed_at}, recovery_from=killed_at))
    latency = retry_latency(env.ledger, victim.name, killed_at)
    print(f"interrupted attempts retried within {latency} s")
    assert_clean(report)
    assert report.retried, "no attempt of the killed worker was retried"
    assert latency is not None and latency < 30
