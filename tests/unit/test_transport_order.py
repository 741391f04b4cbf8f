"""The worker's broker thread performs a chunk of the outbox in a fixed order: reports,
publishes, the reports that follow those publishes, then acknowledgements."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, cast

from common import broker as topo
from common.broker import Broker
from common.messages import StatusMessage
from common.states import RunState
from workerd.outbox import Outbox, Publish, Report, Settle
from workerd.transport import Transport

T0 = datetime(2026, 12, 1, tzinfo=UTC)


class Recording:
    """Stands in for common.broker.Broker: notes what the transport sends, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def publish(self, exchange: str, routing_key: str, body: bytes, *,
                message_id: str | None = None, headers: dict[str, Any] | None = None) -> None:
        if exchange == topo.STATUS:
            self.sent.append(("report", [m["state"] for m in json.loads(body)]))
        else:
            self.sent.append(("publish", message_id))

    def ack(self, tag: int, *, multiple: bool = False) -> None:
        self.sent.append(("ack", tag))

    def reject(self, tag: int, *, requeue: bool) -> None:
        self.sent.append(("reject", tag))

    def wake(self) -> None:
        """Nothing waits here."""


def status(state: RunState) -> StatusMessage:
    return StatusMessage(run_id=1, attempt=1, state=state, at=T0)


def transport() -> tuple[Transport, Outbox, Recording]:
    broker, outbox = Recording(), Outbox()
    link = Transport(cast(Broker, broker), outbox, ("default",), 4, lambda *_: None,
                     lambda _: None)
    link.generation = 2
    link.unsettled = {7}
    return link, outbox, broker


def queue_failure_and_retry(outbox: Outbox, generation: int) -> None:
    """What an attempt queues when it failed and has attempts left."""
    outbox.put(Report(status(RunState.FAILED)),
               Publish(topo.RETRY, "default.normal", b"{}", "1.2", {"tier": "1"}, generation,
                       then=status(RunState.RETRYING)),
               Settle(7, generation))


def test_a_report_that_follows_a_publish_is_sent_after_it_and_before_the_ack() -> None:
    link, outbox, broker = transport()
    queue_failure_and_retry(outbox, 2)
    link._perform()
    assert broker.sent == [("report", ["failed"]), ("publish", "1.2"),
                           ("report", ["retrying"]), ("ack", 7)]


def test_a_publish_dropped_with_its_connection_takes_its_report_along() -> None:
    link, outbox, broker = transport()
    queue_failure_and_retry(outbox, 1)
    link._perform()  # generation 1 is gone: the delivery went back, the schedulers decide
    assert broker.sent == [("report", ["failed"])]
