"""Connections a schedctl command opens (each command opens what it needs, then closes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from common import broker as topo
from common.broker import Broker
from common.db import Database
from common.messages import CancelMessage, encode
from schedctl.context import require


@contextmanager
def database(dsn: str | None) -> Iterator[Database]:
    """A small pool on the DSN, closed afterwards."""
    db = Database(require(dsn, "dsn", "ZEITPLAN_PG_DSN"), max_size=2, name="schedctl")
    try:
        yield db
    finally:
        db.close()


def broadcaster(amqp: str | None) -> Broadcast:
    """Sends cancellations on the control exchange (a no-op without AMQP settings)."""
    return Broadcast([u for u in (amqp or "").split(",") if u])


class Broadcast:
    """Publishes control messages to every worker."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.sent = False

    def __call__(self, message: CancelMessage) -> None:
        if not self.urls:
            return
        broker = Broker(self.urls, name="schedctl")
        broker.connect()
        try:
            broker.declare_topology([])
            broker.publish(topo.CONTROL, "", encode(message))
            self.sent = True
        finally:
            broker.close()
