"""The RabbitMQ node that leads the run queues killed under load, then restarted."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.faults.checker import Faults
from tests.faults.harness import FaultEnv, assert_clean, wait_for
from tests.faults.workload import phase

pytestmark = pytest.mark.timeout(300)
RUN_QUEUE = "zeitplan.runs.default.normal"  # the workload's priority 5


def test_killing_the_rabbitmq_node_that_leads_the_run_queues_loses_nothing(
        fault_env: Callable[..., FaultEnv]) -> None:
    env = fault_env()
    with env.workload() as load:
        load.run_for(phase(8))
        victim = wait_for(lambda: env.cluster.queue_leader(RUN_QUEUE), 30,
                          f"the leader of {RUN_QUEUE}")
        killed_at = time.time()
        victim.kill()

        def moved() -> str | None:
            node = env.cluster.queue_leader(RUN_QUEUE)
            return node.nodename if node is not None and node is not victim else None

        new_leader = wait_for(moved, 60, "a new leader of the run queue")
        load.run_for(phase(8))
        victim.start()
        victim.wait_ready(120)
        load.run_for(phase(10))
    report = env.verdict("RabbitMQ run-queue leader killed", load,
                         Faults(recovery_from=killed_at),
                         extra=f"killed {victim.name}; {RUN_QUEUE} moved to {new_leader}")
    assert_clean(report)
