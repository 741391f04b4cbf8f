"""Publishing run messages (leader and status consumer share it)."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from common import broker as topo
from common.broker import Broker
from common.messages import RunMessage, encode
from schedulerd import metrics

log = structlog.get_logger()


class RunPublisher:
    """Publishes run messages on one Broker, declaring a pool's queues on first use."""

    def __init__(self, broker: Broker, pools: tuple[str, ...]) -> None:
        self.broker = broker
        self.known_pools = set(pools)
        self.declared: set[str] = set()

    def connect(self) -> None:
        """Connect and declare the topology for the configured pools."""
        self.broker.connect()
        self.broker.declare_topology(sorted(self.known_pools))
        self.declared = set(self.known_pools)

    def run(self, message: RunMessage) -> None:
        """Publish one attempt to its pool's queue (confirmed)."""
        if message.pool not in self.declared:
            self.broker.declare_topology([message.pool])
            self.declared.add(message.pool)
        self.broker.publish(topo.RUNS, topo.run_routing_key(message.pool, message.priority),
                            encode(message), message_id=message.attempt_id)
        metrics.DISPATCHED.inc()
        if message.attempt == 1:
            metrics.DISPATCH_LATENESS.observe(
                max(0.0, (datetime.now(UTC) - message.scheduled_for).total_seconds()))

    def dead(self, message: RunMessage, reason: str) -> None:
        """Put a run that is out of attempts in the dead-letter queue, and alert."""
        self.broker.publish(topo.DEAD, "", encode(message), message_id=message.attempt_id,
                            headers={"x-zeitplan-reason": reason})
        metrics.DEAD.inc()
        log.error("run_dead", run_id=message.run_id, job_id=message.job_id,
                  attempt=message.attempt, reason=reason)
