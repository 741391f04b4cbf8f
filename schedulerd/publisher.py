"""Publishing run messages (leader and status consumer share it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

import structlog

from common import broker as topo
from common.broker import Broker
from common.broker_batch import BatchPublisher, Outgoing, PublishIncomplete
from common.errors import BrokerError, Unroutable
from common.messages import RunMessage, encode, encode_pack
from schedulerd import metrics
from schedulerd.planner import packs

log = structlog.get_logger()


class RunPublisher:
    """Publishes run messages, declaring a pool's queues on first use. Single messages go
    through `broker` (confirmed one by one); batches through `batcher` (windowed confirms).

    The topology is declared once, not on every reconnect: the queues are durable, and
    declaring a quorum queue whose leader was just lost waits for its election (seconds
    in which the leader would dispatch nothing). A message returned unroutable (the
    queues are gone) makes the next publish declare them again."""

    def __init__(self, broker: Broker, pools: tuple[str, ...],
                 batcher: BatchPublisher | None = None, runs_per_message: int = 1) -> None:
        self.broker = broker
        self.batcher = batcher
        self.runs_per_message = runs_per_message
        self.known_pools = set(pools)
        self.declared: set[str] = set()

    @property
    def connected(self) -> bool:
        """Both connections are open."""
        return self.broker.connected and (self.batcher is None or self.batcher.connected)

    def connect(self) -> None:
        """Connect, and declare the topology for the configured pools if not yet done."""
        if not self.broker.connected:
            self.broker.connect()
            if not self.declared:
                self.broker.declare_topology(sorted(self.known_pools))
                self.declared = set(self.known_pools)
        if self.batcher is not None and not self.batcher.connected:
            self.batcher.connect()

    def close(self) -> None:
        """Close both connections."""
        self.broker.close()
        if self.batcher is not None:
            self.batcher.close()

    def run(self, message: RunMessage) -> None:
        """Publish one attempt to its pool's queue (confirmed)."""
        self._declare([message])
        with self._redeclare_if_returned():
            self.broker.publish(topo.RUNS, topo.run_routing_key(message.pool, message.priority),
                                encode(message), message_id=message.attempt_id)
        _count([message])

    def runs(self, messages: list[RunMessage]) -> None:
        """Publish attempts as one batch, runs of one queue packed `runs_per_message` to a
        message; PublishIncomplete names the confirmed ones (indexes into `messages`)."""
        assert self.batcher is not None, "RunPublisher.runs needs a batcher"
        self._declare(messages)
        keys = [topo.run_routing_key(m.pool, m.priority) for m in messages]
        groups = packs(keys, self.runs_per_message)
        try:
            self.batcher.publish([Outgoing(
                topo.RUNS, keys[group[0]], encode_pack([messages[i] for i in group]),
                messages[group[0]].attempt_id) for group in groups],
                while_waiting=self._keep_alive)
        except PublishIncomplete as exc:
            if exc.returned:
                self.declared.clear()
            confirmed = frozenset(i for n in exc.confirmed for i in groups[n])
            _count([messages[i] for i in sorted(confirmed)])
            raise PublishIncomplete(str(exc), confirmed, exc.answered, exc.returned) from exc
        _count(messages)

    def _keep_alive(self) -> None:
        """Serve the blocking connection's heartbeats while a batch waits for confirms."""
        if self.broker.connected:
            with contextlib.suppress(BrokerError):  # it reconnects before its next use
                self.broker.process(0)

    def _declare(self, messages: list[RunMessage]) -> None:
        for pool in sorted({m.pool for m in messages} - self.declared):
            self.broker.declare_topology([pool])
            self.declared.add(pool)

    @contextlib.contextmanager
    def _redeclare_if_returned(self) -> Iterator[None]:
        try:
            yield
        except Unroutable:
            self.declared.clear()
            raise

    def dead(self, message: RunMessage, reason: str) -> None:
        """Put a run that is out of attempts in the dead-letter queue, and alert."""
        with self._redeclare_if_returned():
            self.broker.publish(topo.DEAD, "", encode(message), message_id=message.attempt_id,
                                headers={"x-zeitplan-reason": reason})
        metrics.DEAD.inc()
        log.error("run_dead", run_id=message.run_id, job_id=message.job_id,
                  attempt=message.attempt, reason=reason)


def _count(messages: list[RunMessage]) -> None:
    now = datetime.now(UTC)
    metrics.DISPATCHED.inc(len(messages))
    for message in messages:
        if message.attempt == 1:
            metrics.DISPATCH_LATENESS.observe(
                max(0.0, (now - message.scheduled_for).total_seconds()))
