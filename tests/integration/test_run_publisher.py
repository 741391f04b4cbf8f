"""The leader's run publisher declares the topology once, not on every reconnect, and
again once a publish comes back unroutable."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import pika
import pika.exceptions
import pytest

from common import broker as topo
from common.broker import Broker
from common.broker_batch import BatchPublisher, PublishIncomplete
from common.devcluster import LocalCluster
from common.errors import Unroutable
from common.messages import RunMessage
from schedulerd.publisher import RunPublisher

pytestmark = pytest.mark.timeout(120)


def _message(pool: str, run_id: int) -> RunMessage:
    return RunMessage(
        run_id=run_id, job_id=run_id, scheduled_for=datetime.now(UTC), attempt=1,
        max_attempts=1, job_type="shell", payload={"command": "true"}, pool=pool,
        priority=5, concurrency="allow", timeout_s=None,
        backoff={"base": 1, "factor": 2, "cap": 60, "jitter": 0}, epoch=1)


class Queues:
    """Looks at and deletes queues, each time on a connection of its own."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.url = urls[0]

    def count(self, queue: str) -> int | None:
        """Ready messages in `queue`, or None when it does not exist."""
        with pika.BlockingConnection(pika.URLParameters(self.url)) as conn:
            try:
                declared = conn.channel().queue_declare(queue, passive=True)
            except pika.exceptions.ChannelClosedByBroker as exc:
                assert exc.reply_code == 404
                return None
            return int(declared.method.message_count)

    def delete(self, queue: str) -> None:
        with pika.BlockingConnection(pika.URLParameters(self.url)) as conn:
            conn.channel().queue_delete(queue)


@pytest.fixture
def pool(cluster: LocalCluster) -> Iterator[str]:
    name = f"pubtest{uuid.uuid4().hex[:8]}"  # no worker consumes it
    yield name
    queues = Queues(cluster.settings.amqp_urls)
    for level in topo.LEVELS:
        queues.delete(topo.run_queue(name, level))


def test_reconnecting_does_not_declare_again_but_a_returned_publish_does(
        cluster: LocalCluster, pool: str) -> None:
    urls = cluster.settings.amqp_urls
    queues, queue = Queues(urls), topo.run_queue(pool, "normal")
    publisher = RunPublisher(Broker(urls, name="test-runs"), (pool,), BatchPublisher(urls))
    try:
        publisher.connect()
        assert queues.count(queue) == 0  # declared on the first connection

        queues.delete(queue)
        publisher.close()
        publisher.connect()
        assert queues.count(queue) is None  # a reconnection declares nothing

        with pytest.raises(PublishIncomplete) as batch:
            publisher.runs([_message(pool, 1)])
        assert batch.value.returned and not batch.value.confirmed
        publisher.runs([_message(pool, 1)])  # declared again, then published
        assert queues.count(queue) == 1

        queues.delete(queue)
        with pytest.raises(Unroutable):
            publisher.run(_message(pool, 2))
        publisher.run(_message(pool, 2))
        assert queues.count(queue) == 1
    finally:
        publisher.close()
