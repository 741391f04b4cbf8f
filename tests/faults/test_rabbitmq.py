"""The RabbitMQ node that leads the run queues killed under load, then restarted."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from common.devcluster.rabbitmq import RabbitNode
from tests.faults.checker import Faults
from tests.faults.harness import FaultEnv, assert_clean, wait_for
from tests.faults.workload import phase

pytestmark = pytest.mark.timeout(300)
RUN_QUEUE = "zeitplan.runs.default.normal"  # the workload's priority 5


def _queue_leaders(env: FaultEnv) -> dict[str, str]:
    """Queue name -> the node name that leads it, as a live node reports it."""
    for node in env.cluster.nodes.values():
        if isinstance(node, RabbitNode) and node.is_running():
            out = node.ctl("list_queues", "name", "leader", "--quiet", "--no-table-headers")
            if out:
                return dict(line.split("\t")[:2] for line in out.splitlines()
                            if line.count("\t") >= 1)
    return {}


def test_killing_the_rabbitmq_node_that_leads_the_run_queues_loses_nothing(
        fault_env: Callable[..., FaultEnv]) -> None:
    env = fault_env()
    with env.workload() as load:
        load.run_for(phase(8))
        leader_name = wait_for(lambda: _queue_leaders(env).get(RUN_QUEUE), 30,
                               f"the leader of {RUN_QUEUE}")
        victim = next(n for n in env.cluster.nodes.values()
                      if isinstance(n, RabbitNode) and n.nodename == leader_name)
        killed_at = time.time()
        victim.kill()
        new_leader = wait_for(lambda: (_queue_leaders(env).get(RUN_QUEUE) or leader_name)
                              != leader_name and _queue_leaders(env)[RUN_QUEUE], 60,
                              "a new leader of the run queue")
        load.run_for(phase(8))
        victim.start()
        victim.wait_ready(120)
        load.run_for(phase(10))
    report = env.verdict("RabbitMQ run-queue leader killed", load,
                         Faults(recovery_from=killed_at),
                         extra=f"killed {victim.name}; {RUN_QUEUE} moved to {new_leader}")
    assert_clean(report)
