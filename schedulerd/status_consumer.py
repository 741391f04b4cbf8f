"""Every scheduler node consumes the status queue into PostgreSQL, in batches.

A batch is acknowledged only after its transaction commits; a replayed batch changes
nothing (events are applied forward-only, logs and attempts are upserts). One event that
PostgreSQL refuses does not hold the others back: a refused batch is split until that
event stands alone, and it goes to the dead letters with the reason (as does a message
that does not parse). Run messages the batch decides to publish (a fresh copy, the next
attempt, a dead letter) go out only after its commit.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import structlog

from common import broker as topo
from common.broker import Broker, Delivery
from common.daemon import UNEXPECTED, Lifecycle
from common.db import Connection, Database
from common.db import dispatch as q
from common.db import epoch as epochs
from common.db import status as store
from common.errors import BrokerError, DatabaseError, DataRefused, MessageError
from common.messages import (
    HeartbeatMessage,
    LogMessage,
    RedeliveredMessage,
    RunMessage,
    StatusMessage,
    StatusQueueMessage,
    decode_item,
    load_batch,
)
from schedulerd import metrics
from schedulerd.config import SchedulerConfig
from schedulerd.planner import redelivery, run_message
from schedulerd.publisher import RunPublisher

log = structlog.get_logger()
INTAKE_LOOP = "status intake"  # the loop's name for liveness (Lifecycle.beat)
Decided = tuple[RunMessage, str | None]  # a copy to publish, or a dead letter (its reason)
REASON = "x-zeitplan-reason"  # dead-letter headers: why, and what kind of message
KIND = "x-zeitplan-kind"


@dataclass(frozen=True)
class Event:
    """One message of a delivery, with the body to dead-letter it by if it is refused."""

    message: StatusQueueMessage
    item: Any  # its JSON object
    body: bytes | None  # the delivery's body when it held this message alone

    def raw(self) -> bytes:
        """The event as received (its own JSON again when it came in a list)."""
        return self.body if self.body is not None else json.dumps(self.item).encode()


def settle_action(row: dict[str, Any], report: RedeliveredMessage) -> str:
    """What to do about a copy of a run that came back (see planner.redelivery), or that a
    worker dropped for its old epoch: then, when the run's attempt failed, another delivery
    of the same copy was executed, and that worker sends the next attempt (or buries it)."""
    action = redelivery(row["state"], row["attempt"], report.attempt, row["max_attempts"],
                        run_copy=row["dispatch"], reported_copy=report.dispatch)
    if report.seen_epoch is not None and report.attempt == row["attempt"] \
            and action in ("retry", "bury"):
        return "ignore"
    return action


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
        # What committed transactions decided to publish, not yet confirmed, in order: kept
        # across a reconnection (the batch's reports, replayed, find the run moved on and
        # do not decide it again); then the confirmed copies not yet recorded as such.
        self.unpublished: list[Decided] = []
        self.unrecorded: list[tuple[int, int]] = []

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
                self.life.idle(INTAKE_LOOP, delay)  # retrying is running: no hang
                delay = min(delay * 2, 5.0)
        self.broker.close()

    def _connect(self) -> None:
        self.publisher.connect()
        self._publish_kept()
        self.broker.set_prefetch(self.cfg.batch * 2)
        self.broker.consume(topo.STATUS, self._receive)

    def _receive(self, delivery: Delivery) -> None:
        self.pending.append(delivery)

    def _consume(self) -> None:
        last_flush = time.monotonic()
        while not self.should_stop():
            self.broker.process(self.cfg.flush_interval)
            self.life.beat(INTAKE_LOOP)
            due = time.monotonic() - last_flush >= self.cfg.flush_interval
            if self.pending and (len(self.pending) >= self.cfg.batch or due):
                self.flush()
                last_flush = time.monotonic()
            if self.life.ready_reason is not None and not self.pending:
                self.life.ready_reason = None if self.db.ping() else "database unreachable"

    def flush(self) -> None:
        """Apply the pending deliveries, then acknowledge them. A message that does not
        parse, or an event PostgreSQL refuses, goes to the dead letters with the reason."""
        batch, self.pending = self.pending, []
        events: list[Event] = []
        refused: list[tuple[bytes, str]] = []
        for delivery in batch:
            try:
                items = load_batch(delivery.body)
            except MessageError as exc:
                refused.append((delivery.body, str(exc)))
                continue
            alone = delivery.body if len(items) == 1 else None
            for item in items:
                try:
                    message = decode_item(item)
                    if not isinstance(message, StatusQueueMessage):
                        raise MessageError(f"a {message.type} message on the status queue")
                except MessageError as exc:
                    refused.append((alone or json.dumps(item).encode(), str(exc)))
                    continue
                events.append(Event(message, item, alone))
        if events:
            self._apply(events, refused)
        for body, reason in refused:
            self._dead_letter(body, reason)
        if batch:
            self.broker.ack(batch[-1].tag, multiple=True)

    def _apply(self, events: list[Event], refused: list[tuple[bytes, str]]) -> None:
        """Apply events in one transaction; if PostgreSQL refuses their data, apply each
        half on its own (in order), down to the one event it refuses, which is set aside."""
        try:
            self._commit([e.message for e in events])
        except DataRefused as exc:
            if len(events) == 1:
                refused.append((events[0].raw(), str(exc)))
                return
            half = len(events) // 2
            log.info("status_batch_split", events=len(events), error=str(exc))
            self._apply(events[:half], refused)
            self._apply(events[half:], refused)
            return
        self._publish_committed()

    def _commit(self, messages: list[StatusQueueMessage]) -> None:
        """One transaction for `messages`; what it decides to publish is queued after the
        commit."""
        statuses = [m for m in messages if isinstance(m, StatusMessage)]
        beats = [m for m in messages if isinstance(m, HeartbeatMessage)]
        chunks = [m for m in messages if isinstance(m, LogMessage)]
        returned = [m for m in messages if isinstance(m, RedeliveredMessage)]
        publish: list[Decided] = []
        with self.db.transaction() as conn:
            applied = store.apply(conn, statuses)
            store.heartbeats(conn, beats)
            self._abandoned(conn, beats, publish)
            store.logs(conn, chunks)
            self._redeliver(conn, returned, publish)
        metrics.STATUS_EVENTS.labels("applied").inc(applied.moved)
        metrics.STATUS_EVENTS.labels("ignored").inc(applied.ignored)
        for dead in applied.dead:
            metrics.DEAD.inc()
            log.error("run_dead", **dead)
        for job_id in applied.paused_jobs:
            log.warning("job_paused_after_failures", job_id=job_id)
        self.unpublished.extend(publish)

    def _publish_kept(self) -> None:
        """On a new connection, publish what an earlier one left unconfirmed, but no copy
        the leader's sweep has replaced meanwhile (the outage outlasted `orphan_grace`):
        the runs stay locked until their copies are recorded, and the sweep passes over
        locked runs, so it cannot replace one while it goes out."""
        copies = [m.run_id for m, dead in self.unpublished if dead is None]
        if not copies:
            self._publish_committed()
            return
        with self.db.transaction() as conn:
            latest = q.queued_copies(conn, copies)
            self.unpublished = [(m, dead) for m, dead in self.unpublished
                                if dead is not None or latest.get(m.run_id) == m.dispatch]
            self._publish_committed(conn)

    def _publish_committed(self, conn: Connection | None = None) -> None:
        """Publish what committed transactions decided, in order, each confirmed; then
        record the confirmed copies (in `conn`, else a transaction of its own), so that no
        later sweep sends them again."""
        while self.unpublished:
            message, dead = self.unpublished[0]
            if dead is None:
                self.publisher.run(message)
                self.unrecorded.append((message.run_id, message.dispatch))
            else:
                self.publisher.dead(message, dead)
            del self.unpublished[0]
        if self.unrecorded:
            if conn is not None:
                q.record_published(conn, self.unrecorded)
            else:
                with self.db.transaction() as own:
                    q.record_published(own, self.unrecorded)
            self.unrecorded = []

    def _dead_letter(self, body: bytes, reason: str) -> None:
        """Set a status-queue message aside in the dead letters, saying why."""
        metrics.STATUS_EVENTS.labels("refused").inc()
        log.error("status_event_refused", reason=reason, size=len(body))
        self.broker.publish(topo.DEAD, "", body, headers={REASON: reason, KIND: "status"})

    def _redeliver(self, conn: Connection, reports: list[RedeliveredMessage],
                   publish: list[Decided]) -> None:
        """Settle run messages that came back to a queue or that a worker dropped for their
        old epoch. A fresh copy carries the current epoch, or the one the worker had seen
        if newer (a leader may take its epoch in ZooKeeper before it records it here), so
        no worker that saw that epoch drops it again."""
        if not reports:
            return
        current = epochs.current(conn).epoch
        rows = {r["run_id"]: r for r in q.claimed_runs(conn, sorted({m.run_id for m in reports}))}
        for report in reports:
            row = rows.get(report.run_id)
            if row is None:
                continue
            action = settle_action(row, report)
            epoch = max(current, report.seen_epoch or 0)
            if action == "republish":  # as a new copy: a later report of this one is stale
                row.update(q.redispatch(conn, [row["run_id"]], epoch)[row["run_id"]])
                publish.append((run_message(row), None))
                metrics.REDISPATCHED.labels(
                    "stale_epoch" if report.seen_epoch is not None else "redelivered").inc()
            elif action in ("retry", "bury"):
                self._next_attempt(conn, row, "worker lost", epoch, publish)

    def _abandoned(self, conn: Connection, beats: list[HeartbeatMessage],
                   publish: list[Decided]) -> None:
        """Give the next attempt to runs a live worker no longer executes though it never
        reported their outcome (its heartbeat lists everything it executes, and comes after
        every outcome it published: see HeartbeatMessage)."""
        current: int | None = None
        for beat in beats:
            if beat.complete:
                for row in q.abandoned(conn, beat.worker, beat.at, beat.runs):
                    current = current or epochs.current(conn).epoch
                    self._next_attempt(conn, row, f"attempt given up by {beat.worker}",
                                       current, publish)

    def _next_attempt(self, conn: Connection, row: dict[str, Any], reason: str, epoch: int,
                      publish: list[Decided]) -> None:
        """Queue the next attempt of a claimed run (locked by the caller), stamped with
        `epoch`, or bury it when it has none left; `publish` gets what to send after the
        commit."""
        if row["attempt"] < row["max_attempts"]:
            row.update(q.requeue(conn, [row["run_id"]], epoch, reason)[row["run_id"]],
                       state="queued")
            publish.append((run_message(row), None))
            metrics.REDISPATCHED.labels("worker_lost").inc()
            log.warning("worker_lost", run_id=row["run_id"], reason=reason,
                        next_attempt=row["attempt"])
        else:
            q.bury(conn, [row["run_id"]], f"{reason}; no attempts left")
            row["state"] = "dead"
            publish.append((run_message(row), f"{reason}; no attempts left"))
