"""Every scheduler node consumes the status queue into PostgreSQL, in batches.

A batch is acknowledged only after its transaction commits; a replayed batch changes
nothing (events are applied forward-only, logs and attempts are upserts).
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from common import broker as topo
from common.broker import Broker, Delivery
from common.daemon import UNEXPECTED, Lifecycle
from common.db import Connection, Database
from common.db import dispatch as q
from common.db import status as store
from common.errors import BrokerError, DatabaseError, MessageError
from common.messages import (
    HeartbeatMessage,
    LogMessage,
    RedeliveredMessage,
    StatusMessage,
    decode_batch,
)
from schedulerd import metrics
from schedulerd.config import SchedulerConfig
from schedulerd.planner import redelivery, run_message
from schedulerd.publisher import RunPublisher

log = structlog.get_logger()


class StatusConsumer:
    """Consumes `zeitplan.status` on its own thread and connection."""

    def __init__(self, config: SchedulerConfig, db: Database, life: Lifecycle) -> None:
        self.cfg = config.status
        self.db = db
        self.life = life
        self.should_stop = life.stopping.is_set
        self.broker = Broker(config.broker.urls, heartbeat=config.broker.heartbeat,
                             name=f"schedulerd-status-{config.node.name}")
        self.publisher = RunPublisher(self.broker, config.leader.pools)
        self.pending: list[Delivery] = []

    def run(self) -> None:
        """Consume until stopped, reconnecting with backoff."""
        delay = 0.2
        while not self.should_stop():
            try:
                self._connect()
                delay = 0.2
                self._consume()
            except Exception as exc:  # noqa: BLE001 - consuming must go on
                if isinstance(exc, BrokerError | DatabaseError):
                    self.life.ready_reason = ("database unreachable"
                                              if isinstance(exc, DatabaseError)
                                              else "RabbitMQ unreachable")
                    log.warning("status_consumer_retrying", error=str(exc), retry_in=delay)
                else:
                    log.exception(UNEXPECTED)
                self.broker.close()
                self.pending.clear()  # unacked deliveries come back from the broker
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.broker.close()

    def _connect(self) -> None:
        self.publisher.connect()
        self.broker.set_prefetch(self.cfg.batch * 2)
        self.broker.consume(topo.STATUS, self._receive)

    def _receive(self, delivery: Delivery) -> None:
        self.pending.append(delivery)

    def _consume(self) -> None:
        last_flush = time.monotonic()
        while not self.should_stop():
            self.broker.process(self.cfg.flush_interval)
            self.life.beat()
            due = time.monotonic() - last_flush >= self.cfg.flush_interval
            if self.pending and (len(self.pending) >= self.cfg.batch or due):
                self.flush()
                last_flush = time.monotonic()
            if self.life.ready_reason is not None and not self.pending:
                self.life.ready_reason = None if self.db.ping() else "database unreachable"

    def flush(self) -> None:
        """Apply the pending deliveries in one transaction, then acknowledge them."""
        batch, self.pending = self.pending, []
        statuses: list[StatusMessage] = []
        beats: list[HeartbeatMessage] = []
        chunks: list[LogMessage] = []
        returned: list[RedeliveredMessage] = []
        bad: list[Delivery] = []
        for delivery in batch:
            try:
                messages = decode_batch(delivery.body)
            except MessageError as exc:
                log.warning("status_message_rejected", error=str(exc))
                bad.append(delivery)
                continue
            for message in messages:
                if isinstance(message, StatusMessage):
                    statuses.append(message)
                elif isinstance(message, HeartbeatMessage):
                    beats.append(message)
                elif isinstance(message, LogMessage):
                    chunks.append(message)
                elif isinstance(message, RedeliveredMessage):
                    returned.append(message)
        with self.db.transaction() as conn:
            applied = store.apply(conn, statuses)
            store.heartbeats(conn, beats)
            self._abandoned(conn, beats)
            store.logs(conn, chunks)
            self._redeliver(conn, returned)
        metrics.STATUS_EVENTS.labels("applied").inc(applied.moved)
        metrics.STATUS_EVENTS.labels("ignored").inc(applied.ignored)
        for dead in applied.dead:
            metrics.DEAD.inc()
            log.error("run_dead", **dead)
        for job_id in applied.paused_jobs:
            log.warning("job_paused_after_failures", job_id=job_id)
        for delivery in bad:
            self.broker.reject(delivery.tag, requeue=False)
        if bad:
            for delivery in batch:
                if delivery not in bad:
                    self.broker.ack(delivery.tag)
        elif batch:
            self.broker.ack(batch[-1].tag, multiple=True)

    def _redeliver(self, conn: Connection, reports: list[RedeliveredMessage]) -> None:
        """Settle run messages that came back to a queue. Publishing happens before the
        transaction commits, so a crash in between re-publishes rather than loses."""
        if not reports:
            return
        rows = {r["run_id"]: r for r in q.claimed_runs(conn, sorted({m.run_id for m in reports}))}
        for report in reports:
            row = rows.get(report.run_id)
            if row is None:
                continue
            action = redelivery(row["state"], row["attempt"], report.attempt,
                                row["max_attempts"], run_copy=row["dispatch"],
                                reported_copy=report.dispatch)
            if action == "republish":  # as a new copy: a later report of this one is stale
                row.update(q.redispatch(conn, [row["run_id"]], row["epoch"],
                                        published=True)[row["run_id"]])
                self.publisher.run(run_message(row))
                metrics.REDISPATCHED.labels("redelivered").inc()
            elif action in ("retry", "bury"):
                self._next_attempt(conn, row, "worker lost")

    def _abandoned(self, conn: Connection, beats: list[HeartbeatMessage]) -> None:
        """Give the next attempt to runs a live worker no longer executes though it never
        reported their outcome (its heartbeat lists everything it executes, and comes after
        every outcome it published: see HeartbeatMessage)."""
        for beat in beats:
            if beat.complete:
                for row in q.abandoned(conn, beat.worker, beat.at, beat.runs):
                    self._next_attempt(conn, row, f"attempt given up by {beat.worker}")

    def _next_attempt(self, conn: Connection, row: dict[str, Any], reason: str) -> None:
        """Publish the next attempt of a claimed run (locked by the caller), or bury it when
        it has none left. Publishing before the commit re-publishes rather than loses."""
        if row["attempt"] < row["max_attempts"]:
            row.update(q.requeue(conn, [row["run_id"]], row["epoch"], reason,
                                 published=True)[row["run_id"]], state="queued")
            self.publisher.run(run_message(row))
            metrics.REDISPATCHED.labels("worker_lost").inc()
            log.warning("worker_lost", run_id=row["run_id"], reason=reason,
                        next_attempt=row["attempt"])
        else:
            q.bury(conn, [row["run_id"]], f"{reason}; no attempts left")
            row["state"] = "dead"
            self.publisher.dead(run_message(row), f"{reason}; no attempts left")
