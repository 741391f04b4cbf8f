"""Every RabbitMQ node stopped for 90 s while a 120 s job runs: the worker's heartbeats
cannot reach the schedulers, so when RabbitMQ returns the run has not been heard of for
longer than `stale_after` (60 s). Its worker stayed a live ZooKeeper member all along, so
the attempt is not taken for lost: it executes once and succeeds."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from common.devcluster.rabbitmq import RabbitNode
from tests.faults.harness import FaultEnv
from tests.integration.support import create, executions, ledger_command, runs, wait_for

pytestmark = pytest.mark.timeout(420)
OUTAGE = 90.0  # seconds: longer than leader.stale_after (60 s)
JOB = 120  # seconds the job runs, outlasting the outage


def test_a_rabbitmq_outage_longer_than_stale_after_does_not_requeue_a_live_workers_attempt(
        fault_env: Callable[..., FaultEnv], tmp_path: Path) -> None:
    env = fault_env()
    book = tmp_path / "ledger"
    job = create(env.db, "outlives-the-outage", command=ledger_command(book, f"sleep {JOB};"),
                 max_attempts=3)
    def in_state(*states: str) -> dict[str, Any] | None:
        found = runs(env.db, job["id"])
        return found[0] if found and found[0]["state"] in states else None

    run = wait_for(lambda: in_state("running"), 30, "the attempt to start")
    rabbits = [n for n in env.cluster.nodes.values() if isinstance(n, RabbitNode)]
    for node in rabbits:
        node.stop()
    stopped = time.monotonic()
    time.sleep(OUTAGE)  # the outage itself: nothing to wait for
    for node in rabbits:
        node.start()
    for node in rabbits:
        node.wait_ready(120)
    print(f"\nRabbitMQ down {time.monotonic() - stopped:.0f} s under a {JOB} s job")
    done = wait_for(lambda: in_state("succeeded", "failed", "dead", "retrying"), JOB + 60,
                    "the run to finish")
    assert run is not None and done is not None
    assert done["state"] == "succeeded", done
    assert done["attempt"] == 1 and done["worker"] == run["worker"], done
    assert executions(book) == {run["id"]: 1}
    leader_logs = "".join(d.proc.log_path.read_text() for d in env.stack.schedulers)
    assert "worker_lost" not in leader_logs
