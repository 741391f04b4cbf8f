"""A run message that comes back to a queue is reported by whoever receives it, and the
status consumer publishes the attempt again if it never started. A copy can be reported
more than once (the report was confirmed but its acknowledgement was lost with the
connection, or a refused report went out again on the next one), and only the first
report about a copy may publish another: two would become two executions of one attempt.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from common import broker as topo
from common.broker import Broker
from common.db import Database
from common.devstack import Stack
from common.messages import LogMessage, RedeliveredMessage, RunMessage, decode_batch
from tests.integration.support import create, logged, report, runs, wait_for

pytestmark = pytest.mark.timeout(120)
POOL = "unconsumed"  # no worker consumes it: the test plays the worker
QUEUE = topo.run_queue(POOL, "normal")


def connected(stack: Stack) -> Broker:
    """A connection with the pool's queues declared (the leader declares them only as it
    first publishes to the pool, just after the run is queued)."""
    broker = Broker(stack.cluster.settings.amqp_urls, name="test-redelivery")
    broker.connect()
    broker.declare_topology([POOL])
    return broker


def take(stack: Stack, timeout: float) -> list[RunMessage]:
    """Every run message that reaches the pool's queue within `timeout` seconds (acked)."""
    broker = connected(stack)
    found: list[RunMessage] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            delivery = broker.get(QUEUE)
            if delivery is None:
                broker.process(0.1)
                continue
            found.extend(m for m in decode_batch(delivery.body) if isinstance(m, RunMessage))
            broker.ack(delivery.tag)
    finally:
        broker.close()
    return found


def test_a_copy_reported_twice_is_published_again_once(stack: Stack, db: Database) -> None:
    connected(stack).close()
    job = create(db, "comes-back", command="true", pool=POOL)
    wait_for(lambda: (r := runs(db, job["id"])) and r[0]["state"] == "queued", 20,
             "the run to be queued")
    first = wait_for(lambda: take(stack, 0.5), 20, "the run message")
    assert [m.attempt for m in first] == [1]
    run_id, copy = first[0].run_id, first[0].dispatch
    back = RedeliveredMessage(run_id, 1, "worker-x", datetime.now(UTC), dispatch=copy)
    report(stack, back, back, LogMessage(run_id, 1, "stdout", 901, b"marker\n"))
    wait_for(lambda: logged(db, run_id, 901), 10, "the status consumer to reach the marker")
    again = take(stack, 2.0)
    assert [(m.run_id, m.attempt) for m in again] == [(run_id, 1)]
    assert again[0].dispatch == copy + 1 == runs(db, job["id"])[0]["dispatch"]
    # The new copy coming back is news: it is published once more.
    report(stack, RedeliveredMessage(run_id, 1, "worker-y", datetime.now(UTC),
                                     dispatch=copy + 1),
           RedeliveredMessage(run_id, 1, "worker-x", datetime.now(UTC), dispatch=copy),
           LogMessage(run_id, 1, "stdout", 902, b"marker\n"))
    wait_for(lambda: logged(db, run_id, 902), 10, "the status consumer to reach the marker")
    assert [m.dispatch for m in take(stack, 2.0)] == [copy + 2]
    # A worker from before copies were numbered reports none: taken as the latest copy.
    report(stack, RedeliveredMessage(run_id, 1, "old-worker", datetime.now(UTC)),
           LogMessage(run_id, 1, "stdout", 903, b"marker\n"))
    wait_for(lambda: logged(db, run_id, 903), 10, "the status consumer to reach the marker")
    assert [m.dispatch for m in take(stack, 2.0)] == [copy + 3]
    assert runs(db, job["id"])[0]["state"] == "queued"
