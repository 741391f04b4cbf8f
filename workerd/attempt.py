"""One attempt of one run on this worker, from delivery to acknowledgement.

Every outcome is reported on the status queue before the run message is acknowledged
(the Outbox keeps that order). Failures retry through the retry exchange with the job's
exponential backoff; the last failure dead-letters the message.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from common import broker as topo
from common.broker import Delivery
from common.messages import (
    CancelMessage,
    LogMessage,
    RedeliveredMessage,
    RunMessage,
    StatusMessage,
    encode,
)
from common.schedule.backoff import Backoff
from common.states import RunState
from common.zk import Coordinator
from workerd import metrics
from workerd.config import WorkerConfig
from workerd.jobtypes import JobContext, JobType, Outcome, RunKey
from workerd.outbox import Confirmation, Outbox, Publish, Report
from workerd.overlap import admit
from workerd.receipt import RETURNED, Receipt

log = structlog.get_logger()
S = RunState
CONFIRM_TIMEOUT = 60.0  # seconds to wait for the `running` report's confirm
HOLD_LIMIT = 1.0  # seconds: a run due later than this goes to a retry tier, sooner is held


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


@dataclass
class Slot:
    """An attempt in progress, as the executor tracks it."""

    message: RunMessage
    cancel: threading.Event
    requeue: bool = False  # the worker is stopping: give the message back, report nothing


class AttemptRunner:
    """Carries out attempts; shared by the executor's threads."""

    def __init__(self, config: WorkerConfig, coord: Coordinator, outbox: Outbox,
                 job_types: dict[str, JobType], stop: threading.Event) -> None:
        self.cfg = config.worker
        self.sql = config.sql
        self.worker = config.node.name
        self.coord = coord
        self.outbox = outbox
        self.job_types = job_types
        self.stop = stop

    def starts_plainly(self, delivery: Delivery, message: RunMessage, cancelled: bool) -> bool:
        """True when an attempt needs no decision before it starts, so it may be reported
        `running` at once: its first delivery, not cancelled, due, within its start
        deadline, and `allow` (no lock to take)."""
        now = utcnow()
        return (message.concurrency == "allow" and not cancelled and not _handed_back(delivery)
                and (message.not_before is None or message.not_before <= now)
                and (message.start_deadline is None or now <= message.start_deadline))

    def handle(self, delivery: Delivery, receipt: Receipt, slot: Slot, cancelled: bool) -> None:
        """Decide, execute and report one delivered attempt."""
        message = receipt.message
        now = utcnow()
        if _handed_back(delivery):
            # Its earlier consumer died or gave it back: whether that attempt started is
            # known to the database only, so the schedulers decide.
            self.outbox.put(Report(RedeliveredMessage(
                message.run_id, message.attempt, self.worker, now, message.dispatch)),
                *receipt.done())
            return
        if cancelled:
            self._final(message, S.CANCELLED, receipt, reason="cancelled before it started")
            return
        if message.not_before and message.not_before > now:
            wait = (message.not_before - now).total_seconds()
            if wait > HOLD_LIMIT:
                self.outbox.put(Publish(
                    topo.RETRY, receipt.routing_key, receipt.body, message.attempt_id,
                    {"tier": str(topo.retry_tier(wait))}, receipt.generation), *receipt.done())
                return
            if self.stop.wait(wait):
                self.outbox.put(*receipt.give_back())
                return
        if message.start_deadline and utcnow() > message.start_deadline:
            self._final(message, S.SKIPPED, receipt,
                        reason=f"start deadline missed: {message.start_deadline.isoformat()}")
            return
        admission = admit(self.coord, message, self.worker, self.stop, self._send_cancel,
                          self.cfg.kill_grace)
        if admission.duplicate:
            log.info("duplicate_delivery", run_id=message.run_id, attempt=message.attempt)
            self.outbox.put(*receipt.done())
            return
        if not admission.admitted:
            self._final(message, S.SKIPPED, receipt, reason=admission.reason)
            return
        try:
            started = utcnow()
            confirmation = Confirmation()
            self.outbox.put(self.running_report(receipt, started, confirmation))
            if not confirmation.wait(CONFIRM_TIMEOUT):
                self.abandon(receipt)
                return
            outcome = self._run(message, slot, started)
        finally:
            if admission.lock:  # without waiting: the outcome must not wait for ZooKeeper
                self.coord.release(admission.lock)
        self._close(receipt, slot, outcome, started)

    def running_report(self, receipt: Receipt, started: datetime,
                       confirmation: Confirmation) -> Report:
        """The `running` report an attempt executes only once it is confirmed, on the
        connection that holds the delivery: if the worker dies later, the schedulers know
        the attempt started; if that connection broke first, the delivery goes back and
        this attempt never runs here."""
        return Report(self._status(receipt.message, S.RUNNING, started_at=started),
                      confirmation, receipt.generation)

    def abandon(self, receipt: Receipt) -> None:
        """Give back an attempt whose `running` report was not confirmed on its delivery's
        connection (if that connection is gone, the settlement is dropped as stale)."""
        log.warning("attempt_abandoned", run_id=receipt.message.run_id,
                    reason="its connection to RabbitMQ broke before it started")
        self.outbox.put(*receipt.give_back())

    def proceed(self, receipt: Receipt, slot: Slot, started: datetime) -> None:
        """Execute an attempt whose `running` report is confirmed, and report its outcome."""
        self._close(receipt, slot, self._run(receipt.message, slot, started), started)

    def _run(self, message: RunMessage, slot: Slot, started: datetime) -> Outcome:
        if message.attempt == 1:
            metrics.START_LATENESS.observe(
                max(0.0, (started - message.scheduled_for).total_seconds()))
        if slot.cancel.is_set():  # between its `running` report and now
            return Outcome("cancelled", error="cancelled")
        return self._execute(message, slot.cancel)

    def _close(self, receipt: Receipt, slot: Slot, outcome: Outcome, started: datetime) -> None:
        if slot.requeue and outcome.state == "cancelled":  # the worker stops: give it back
            self.outbox.put(*receipt.give_back())
            return
        self._conclude(receipt, receipt.message, outcome, started)

    def _execute(self, message: RunMessage, cancel: threading.Event) -> Outcome:
        job_type = self.job_types.get(message.job_type)
        if job_type is None:
            return Outcome("failed", error=f"this worker has no job type {message.job_type!r}")
        seq = {"stdout": 0, "stderr": 0}

        def emit(stream: str, chunk: bytes) -> None:
            seq[stream] += 1
            self.outbox.put(Report(LogMessage(message.run_id, message.attempt, stream,
                                              seq[stream], chunk)))
        ctx = JobContext(
            key=RunKey(message.run_id, message.job_id, message.scheduled_for, message.attempt),
            payload=message.payload, timeout=message.timeout_s, cancel=cancel, emit=emit,
            sql_dsns=self.sql.dsns_for(message.pool), kill_grace=self.cfg.kill_grace,
            output_limit=self.cfg.output_limit, pool=message.pool)
        try:
            return job_type.run(ctx)
        except Exception as exc:  # noqa: BLE001 - a job type's bug fails the attempt only
            log.exception("job_type_crashed", run_id=message.run_id, job_type=message.job_type)
            return Outcome("failed", error=f"worker error: {type(exc).__name__}: {exc}")

    def _conclude(self, receipt: Receipt, message: RunMessage, outcome: Outcome,
                  started: datetime) -> None:
        state = RunState(outcome.state)
        metrics.ATTEMPTS.labels(outcome.state).inc()
        common: dict[str, Any] = {"started_at": started, "exit_code": outcome.exit_code,
                                  "error": outcome.error}
        if state in (S.SUCCEEDED, S.CANCELLED):
            self._final(message, state, receipt, **common)
            return
        self._report(message, state, **common)
        if message.attempt >= message.max_attempts:
            reason = f"failed {message.attempt} of {message.max_attempts} attempts"
            self._report(message, S.DEAD, reason=reason, **common)
            self.outbox.put(Publish(topo.DEAD, "", receipt.body, message.attempt_id,
                                    {"x-zeitplan-reason": reason}, receipt.generation),
                            *receipt.done())
            log.error("run_dead", run_id=message.run_id, job_id=message.job_id,
                      attempt=message.attempt, error=outcome.error)
            return
        backoff = Backoff(base=timedelta(seconds=message.backoff["base"]),
                          factor=message.backoff["factor"],
                          cap=timedelta(seconds=message.backoff["cap"]),
                          jitter=message.backoff["jitter"])
        delay = backoff.delay(message.attempt + 1, seed=message.attempt_id)
        retry = replace(message, attempt=message.attempt + 1, not_before=utcnow() + delay)
        seconds = delay.total_seconds()
        # `retrying` is reported once the retry message is with the broker: a run that comes
        # back to a queue while `failed` may have lost its retry, one `retrying` has not.
        retrying = self._status(message, S.RETRYING, reason=f"attempt {retry.attempt} of "
                                f"{message.max_attempts} in {seconds:g} s", **common)
        if seconds > 1.0:
            target = Publish(topo.RETRY, receipt.routing_key, encode(retry), retry.attempt_id,
                             {"tier": str(topo.retry_tier(seconds))}, receipt.generation,
                             then=retrying)
        else:
            target = Publish(topo.RUNS, receipt.routing_key, encode(retry), retry.attempt_id,
                             None, receipt.generation, then=retrying)
        self.outbox.put(target, *receipt.done())

    def _final(self, message: RunMessage, state: RunState, receipt: Receipt,
               **fields: Any) -> None:
        self._report(message, state, **fields)
        self.outbox.put(*receipt.done())

    def _report(self, message: RunMessage, state: RunState, **fields: Any) -> None:
        self.outbox.put(Report(self._status(message, state, **fields)))

    def _status(self, message: RunMessage, state: RunState, **fields: Any) -> StatusMessage:
        return StatusMessage(run_id=message.run_id, attempt=message.attempt, state=state,
                             at=utcnow(), worker=self.worker, **fields)

    def _send_cancel(self, cancel: CancelMessage) -> None:
        self.outbox.put(Publish(topo.CONTROL, "", encode(cancel)))


def _handed_back(delivery: Delivery) -> bool:
    """Whether an earlier consumer had this delivery: it died, or gave the run back."""
    return bool(delivery.redelivered or delivery.delivery_count
                or RETURNED in delivery.headers)
