"""The asynchronous adapter against a real RabbitMQ: confirms and returns reach the
publisher's callback, and a lost connection is reported for the node it was on."""

from __future__ import annotations

import random

import pytest

from common.broker import Broker
from common.broker_async import AsyncBroker
from common.devcluster import LocalCluster
from common.devcluster.ports import free_ports
from common.errors import BrokerError

pytestmark = pytest.mark.timeout(60)


def test_a_publish_is_confirmed_and_an_unroutable_one_is_not(cluster: LocalCluster) -> None:
    queue = "test.async.confirms"
    tools = Broker(cluster.settings.amqp_urls, name="test-tools")
    tools.connect()
    tools.declare_queue(queue)
    tools.purge(queue)
    broker = AsyncBroker(cluster.settings.amqp_urls[:1], name="test-async")
    answers: dict[str, bool] = {}

    def on_ready() -> None:
        broker.publish("", "test.async.none", b"{}", lambda ok: answers.update(lost=ok))
        broker.publish("", queue, b"{}", lambda ok: answers.update(kept=ok))

    def tick() -> None:
        if len(answers) == 2:
            broker.stop()

    broker.run(on_ready, tick, 0.05)
    assert answers == {"lost": False, "kept": True}
    try:
        assert tools.message_count(queue) == 1
    finally:
        tools.close()


def test_a_lost_connection_names_its_own_cause_not_a_node_tried_before(
        cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = f"amqp://guest:guest@127.0.0.1:{free_ports(1)[0]}/%2F"
    monkeypatch.setattr(random, "shuffle", lambda _items: None)  # the closed port first
    broker = AsyncBroker([closed, cluster.settings.amqp_urls[0]], name="test-async")
    with pytest.raises(BrokerError) as lost:
        broker.run(lambda: broker.fail("cut by the test"), lambda: None, 0.05)
    assert str(lost.value) == "lost the connection to RabbitMQ: cut by the test"
