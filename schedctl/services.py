"""Connections a schedctl command opens (each command opens what it needs, then closes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from common import broker as topo
from common.broker import Broker
from common.cancels import mark, targets_of
from common.db import Database
from common.errors import BrokerError, CoordinationError, Unroutable
from common.messages import CancelMessage, encode
from common.sections import ZooKeeperSection
from common.zk import Coordinator
from schedctl.context import require


@contextmanager
def database(dsn: str | None) -> Iterator[Database]:
    """A small pool on the DSN, closed afterwards."""
    db = Database(require(dsn, "dsn", "ZEITPLAN_PG_DSN"), max_size=2, name="schedctl")
    try:
        yield db
    finally:
        db.close()


def broadcaster(amqp: str | None, zk: str | None) -> Broadcast:
    """Tells the workers of cancellations (each channel a no-op without its settings)."""
    return Broadcast([u for u in (amqp or "").split(",") if u], zk or None)


class Broadcast:
    """Tells every worker of a cancellation committed in PostgreSQL: writes its durable
    mark in ZooKeeper (read by every worker, also one started later), then publishes it
    on the control fanout (the fast path to the workers connected now). Neither is needed
    for the cancellation to hold: the leader writes the mark of every recorded
    cancellation that lacks one within about a second, and running attempts stop when
    the mark reaches their worker; so a channel that fails is reported, not raised."""

    def __init__(self, urls: list[str], zk_hosts: str | None = None,
                 zk_root: str = ZooKeeperSection.root) -> None:
        self.urls = urls
        self.zk_hosts = zk_hosts
        self.zk_root = zk_root
        self.sent = False
        self.error: str | None = None

    def __call__(self, message: CancelMessage) -> None:
        if self.zk_hosts:
            self._mark(message)
        if self.urls:
            self._publish(message)

    def _mark(self, message: CancelMessage) -> None:
        coord = Coordinator(self.zk_hosts or "", root=self.zk_root, session_timeout=5.0,
                            name="schedctl")
        try:
            coord.start(timeout=5.0)
            coord.add_cancel_marks(mark(kind, target) for kind, target in targets_of(message))
        except CoordinationError:
            pass  # the leader writes the mark from the database
        finally:
            coord.stop()

    def _publish(self, message: CancelMessage) -> None:
        broker = Broker(self.urls, name="schedctl")
        try:
            broker.connect()
            broker.declare_topology([])
            broker.publish(topo.CONTROL, "", encode(message))
            self.sent = True
        except Unroutable:
            pass  # no worker connected: those that start later read the durable mark
        except BrokerError as exc:
            self.error = str(exc)
        finally:
            broker.close()

    def warning(self) -> str | None:
        """What to tell the user when running attempts were not told at once."""
        if self.urls and self.error is None:
            return None
        why = self.error or "no --amqp/$ZEITPLAN_AMQP_URLS"
        return (f"warning: {why}: running attempts stop when the cancellation's mark "
                "reaches their workers (within seconds)")
