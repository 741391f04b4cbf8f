"""Every scheduler node consumes the dead-letter queue into PostgreSQL, one at a time.

The queue has a single active consumer; the others stand by. A batch is acknowledged only
after its transaction commits, and a letter seen again (a lost ack) is recorded once (its
digest is unique). A run message RabbitMQ dead-lettered before its attempt started ends its
run ``dead`` in the same transaction, through the forward-only state machine. One letter
the database refuses is recorded bare (without run, job and headers) rather than hold up
the queue.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import structlog

from common import broker as topo
from common.broker import Broker, Delivery
from common.daemon import UNEXPECTED, Lifecycle
from common.db import Database, status
from common.db import dead_letters as store
from common.dead_letters import (
    DeadLetter,
    ends_run,
    jsonable,
    read,
    run_reason,
    unreadable,
)
from common.errors import DatabaseError, ServiceError
from common.messages import StatusMessage
from common.states import FINAL, RunState
from schedulerd import metrics
from schedulerd.config import SchedulerConfig

log = structlog.get_logger()
BATCH = 100  # deliveries per transaction
FLUSH_INTERVAL = 0.2  # seconds a delivery waits for its batch to fill
# Seconds a worker's or scheduler's dead letter waits for its run to be final in the
# database: the run's outcome and output go out on the status queue before the letter, so
# once the run is final its stderr is there to quote.
SETTLE = 5.0
LEGACY_CHECK = 60.0  # seconds between looks for the dead-letter queue of earlier versions
_KINDS = frozenset({"run", "status", "unknown"})


@dataclass
class _Pending:
    delivery: Delivery
    letters: list[DeadLetter]
    since: float  # time.monotonic() when it arrived


class DeadLetterConsumer:
    """Consumes the dead-letter queue on its own thread and connection."""

    def __init__(self, config: SchedulerConfig, db: Database, life: Lifecycle) -> None:
        self.db = db
        self.life = life
        self.broker = Broker(config.broker.urls, heartbeat=config.broker.heartbeat,
                             name=f"schedulerd-dead-letters-{config.node.name}")
        self.pending: list[_Pending] = []
        self.legacy_consumed = False
        self.next_legacy_check = 0.0

    def run(self) -> None:
        """Consume until stopped, reconnecting with backoff."""
        delay = 0.2
        while not self.life.stopping.is_set():
            try:
                self._connect()
                delay = 0.2
                self._consume()
            except ServiceError as exc:
                log.warning("dead_letter_consumer_retrying", error=str(exc), retry_in=delay)
            except Exception:  # noqa: BLE001 - consuming must go on
                log.exception(UNEXPECTED)
            self.broker.close()
            self.pending.clear()  # unacked deliveries come back from the broker
            self.life.stopping.wait(delay)
            delay = min(delay * 2, 5.0)
        self.broker.close()

    def _connect(self) -> None:
        self.broker.connect()
        self.broker.declare_topology(())
        self.broker.set_prefetch(BATCH * 2)
        self.broker.consume(topo.DEAD_LETTERS, self._receive)
        self.legacy_consumed = False
        self.next_legacy_check = 0.0

    def _receive(self, delivery: Delivery) -> None:
        try:
            letters = read(delivery)
        except Exception:  # noqa: BLE001 - a bug in reading one letter must not stop the queue
            log.exception(UNEXPECTED)
            letters = [unreadable(delivery)]
        self.pending.append(_Pending(delivery, letters, time.monotonic()))

    def _consume(self) -> None:
        last_flush = time.monotonic()
        while not self.life.stopping.is_set():
            self.broker.process(FLUSH_INTERVAL)
            if time.monotonic() >= self.next_legacy_check:
                self._drain_legacy_queue()
            due = time.monotonic() - last_flush >= FLUSH_INTERVAL
            if self.pending and (len(self.pending) >= BATCH or due):
                self.flush()
                last_flush = time.monotonic()

    def _drain_legacy_queue(self) -> None:
        """Take the unbounded dead-letter queue of earlier versions, if there is one, out of
        the exchange and consume it too: it then only holds letters from before the upgrade,
        or copies of letters also in the bounded queue (recorded once by their digest) when
        a daemon of an earlier version starts and binds it again. Deleting it is left to the
        operator, once every daemon is upgraded: quorum queues cannot be deleted only if
        empty, and another node may hold one of its letters unrecorded."""
        self.next_legacy_check = time.monotonic() + LEGACY_CHECK
        if not self.broker.queue_exists(topo.LEGACY_DEAD_QUEUE):
            self.legacy_consumed = False  # deleted: a new one is consumed anew
            return
        self.broker.unbind(topo.LEGACY_DEAD_QUEUE, topo.DEAD)
        if not self.legacy_consumed:
            log.warning("legacy_dead_letter_queue_draining", queue=topo.LEGACY_DEAD_QUEUE)
            self.broker.consume(topo.LEGACY_DEAD_QUEUE, self._receive)
            self.legacy_consumed = True

    def flush(self) -> None:
        """Record the pending letters in one transaction, then acknowledge them; a letter
        whose run is not final yet waits up to SETTLE seconds for it."""
        batch, self.pending = self.pending, []
        try:
            done, held = self._record(batch)
        except DatabaseError as exc:
            if not self.db.ping():
                raise  # unreachable: the deliveries come back after the reconnect
            log.warning("dead_letter_batch_refused", error=str(exc), letters=len(batch))
            done, held = [], []
            for one in batch:
                recorded, waiting = self._record_alone(one)
                done += recorded
                held += waiting
        self.pending = held + self.pending
        for entry in done:
            self.broker.ack(entry.delivery.tag)

    def _record_alone(self, entry: _Pending) -> tuple[list[_Pending], list[_Pending]]:
        try:
            return self._record([entry])
        except DatabaseError as exc:
            if not self.db.ping():
                raise
            log.error("dead_letter_recorded_bare", error=str(exc),
                      reason=entry.letters[0].reason, bytes=len(entry.delivery.body))
            bare = [replace(letter, run_id=None, job_id=None, attempt=None, by_broker=False,
                            headers={"x-zeitplan-unrecordable": jsonable(str(exc))})
                    for letter in entry.letters]
            return self._record([_Pending(entry.delivery, bare, entry.since)])

    def _record(self, batch: list[_Pending]) -> tuple[list[_Pending], list[_Pending]]:
        """Record what is ready in one transaction; returns (recorded, still waiting)."""
        now = time.monotonic()
        with self.db.transaction() as conn:
            rows = store.runs(conn, [letter.run_id for entry in batch
                                     for letter in entry.letters
                                     if letter.kind == "run" and letter.run_id is not None])
            waits = [_unsettled(entry, rows, now) for entry in batch]
            ready = [entry for entry, wait in zip(batch, waits, strict=True) if not wait]
            letters = [letter for entry in ready for letter in entry.letters]
            at = datetime.now(UTC)
            ending = [StatusMessage(run_id=d.run_id, attempt=d.attempt, state=RunState.DEAD,
                                    at=at, reason=run_reason(d))
                      for d in letters if d.run_id in rows and d.attempt is not None
                      and ends_run(d, rows[d.run_id]["state"], rows[d.run_id]["attempt"])]
            applied = status.apply(conn, ending)
            added = store.record(conn, letters)
        for letter in letters:  # a publisher's own kind is counted as "other": few labels
            metrics.DEAD_LETTERS.labels(letter.kind if letter.kind in _KINDS else "other").inc()
        if added:
            log.info("dead_letters_recorded", count=added)
        for dead in applied.dead:
            metrics.DEAD.inc()
            log.error("run_dead", **dead)
        for job_id in applied.paused_jobs:
            log.warning("job_paused_after_failures", job_id=job_id)
        return ready, [entry for entry, wait in zip(batch, waits, strict=True) if wait]


def _unsettled(entry: _Pending, rows: dict[int, dict[str, object]], now: float) -> bool:
    """Whether a published run letter should wait for its run's outcome report."""
    if now - entry.since >= SETTLE:
        return False
    return any(not d.by_broker and d.run_id in rows
               and RunState(str(rows[d.run_id]["state"])) not in FINAL
               for d in entry.letters if d.kind == "run")
