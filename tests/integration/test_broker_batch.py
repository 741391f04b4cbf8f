"""The batch publisher: windowed confirms, across reconnections, and unroutable messages."""

from __future__ import annotations

import pytest

from common.broker import Broker
from common.broker_batch import BatchPublisher, Outgoing, PublishIncomplete
from common.devcluster import LocalCluster

pytestmark = pytest.mark.timeout(120)


def _batch(queue: str, start: int, count: int) -> list[Outgoing]:
    return [Outgoing("", queue, b"{}", f"m{n}") for n in range(start, start + count)]


def test_batches_are_confirmed_before_and_after_a_reconnection(cluster: LocalCluster) -> None:
    broker = Broker(cluster.settings.amqp_urls, name="test-batch")
    broker.connect()
    queue = "test.batch.confirms"
    broker.declare_queue(queue)
    publisher = BatchPublisher(cluster.settings.amqp_urls)
    try:
        publisher.connect()
        publisher.publish(_batch(queue, 0, 300))
        publisher.connect()  # a fresh connection: delivery tags start again at 1
        publisher.publish(_batch(queue, 300, 300))
        with pytest.raises(PublishIncomplete) as failed:
            publisher.publish([*_batch(queue, 600, 2), Outgoing("", "no.such.queue", b"{}",
                                                                "lost")])
        assert failed.value.confirmed == frozenset({0, 1})
        assert failed.value.answered  # returned, not lost: the connection is sound
        assert failed.value.returned
        publisher.publish(_batch(queue, 602, 1))  # and goes on serving
        publisher.close()
        with pytest.raises(PublishIncomplete) as cut:
            publisher.publish(_batch(queue, 603, 1))
        assert not cut.value.answered and not cut.value.returned
        assert broker.message_count(queue) == 603
    finally:
        publisher.close()
        broker.close()
