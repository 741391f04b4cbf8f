"""One attempt of one run on this worker, from delivery to acknowledgement.

Every outcome is reported on the status queue before the run message is acknowledged
(the Outbox keeps that order). Failures retry through the retry exchange with the job's
exponential backoff; the last failure dead-letters the message.

Under a `forbid`/`queue_one`/`replace` lock an attempt runs only while the lock is safe:
when the ZooKeeper session may be lost (``Coordinator.on_lock_risk``) every attempt under
a lock is stopped within the coordinator's `lock_grace` and fails, and the lock is kept
until the job's own thread has ended, even when a plug-in outlives its attempt.
"""

from __future__ import annotations

import os
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
from workerd.epochs import Epochs
from workerd.jobtypes import JobContext, JobType, Outcome, RunKey
from workerd.outbox import Confirmation, Outbox, Publish, Report
from workerd.overlap import WAIT_LIMIT, admit, lock_name
from workerd.receipt import RETURNED, Receipt

log = structlog.get_logger()
S = RunState
CONFIRM_TIMEOUT = 60.0  # seconds to wait for the `running` report's confirm
HOLD_LIMIT = 1.0  # seconds: a run due later than this goes to a retry tier, sooner is held
EXIT_UNLOCKED = 75  # the exit status when a call that ignores its cancel would run unlocked
FENCED = "stopped: its job's lock was at risk (the ZooKeeper session lost or cut off)"


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


@dataclass
class Slot:
    """An attempt in progress, as the executor tracks it."""

    message: RunMessage
    cancel: threading.Event
    requeue: bool = False  # the worker is stopping: give the message back, report nothing
    fenced: bool = False  # stopped because its job's lock may be lost
    context: JobContext | None = None  # once executing


class AttemptRunner:
    """Carries out attempts; shared by the executor's threads."""

    def __init__(self, config: WorkerConfig, coord: Coordinator, outbox: Outbox,
                 job_types: dict[str, JobType], stop: threading.Event,
                 epochs: Epochs | None = None) -> None:
        self.cfg = config.worker
        self.sql = config.sql
        self.worker = config.node.name
        self.coord = coord
        self.outbox = outbox
        self.job_types = job_types
        self.stop = stop
        self._guard = threading.Lock()
        self._locked: dict[int, Slot] = {}  # id(slot) -> slot, attempts under a lock
        self._kept: set[str] = set()  # locks kept for a job thread that outlived its attempt
        self.epochs = epochs or Epochs()  # the newest epoch seen: retries carry it

    def starts_plainly(self, delivery: Delivery, message: RunMessage, cancelled: bool) -> bool:
        """True when an attempt needs no decision before it starts, so it may be reported
        `running` at once: its first delivery, not cancelled, due, within its start
        deadline, and `allow` (no lock to take)."""
        now = utcnow()
        return (message.concurrency == "allow" and not cancelled and not _handed_back(delivery)
                and (message.not_before is None or message.not_before <= now)
                and not start_deadline_missed(message, now))

    def drop_stale(self, receipt: Receipt, newest: int) -> None:
        """Settle a run message older than the `newest` epoch seen without starting it, and
        report it: the schedulers publish a fresh copy if the run still needs one."""
        message = receipt.message
        log.warning("run_message_stale", run_id=message.run_id, attempt=message.attempt,
                    epoch=message.epoch, newest_epoch=newest)
        self.outbox.put(Report(RedeliveredMessage(
            message.run_id, message.attempt, self.worker, utcnow(), message.dispatch,
            seen_epoch=newest)), *receipt.done())

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
            log.info("attempt_dropped_cancelled", run_id=message.run_id, job_id=message.job_id,
                     attempt=message.attempt)
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
        deadline = message.start_deadline
        if deadline is not None and start_deadline_missed(message, utcnow()):
            self._final(message, S.SKIPPED, receipt,
                        reason=f"start deadline missed: {deadline.isoformat()}")
            return
        admission = admit(self.coord, message, self.worker, self.stop, self._send_cancel,
                          self.cfg.kill_grace)
        if admission.duplicate:
            self._after_original(receipt)
            return
        if not admission.admitted:
            self._final(message, S.SKIPPED, receipt, reason=admission.reason)
            return
        outcome: Outcome | None = None
        if admission.lock:
            with self._guard:
                self._locked[id(slot)] = slot
        try:
            started = utcnow()
            confirmation = Confirmation()
            self.outbox.put(self.running_report(receipt, started, confirmation))
            if not confirmation.wait(CONFIRM_TIMEOUT):
                self.abandon(receipt)
                return
            outcome = self._run(message, slot, started)
            if slot.fenced and outcome.state == "cancelled":
                outcome = replace(outcome, state="failed", error=FENCED)
            self._close(receipt, slot, outcome, started)
        finally:
            if admission.lock:
                self._unlock(admission.lock, slot, outcome)

    def _after_original(self, receipt: Receipt) -> None:
        """A second copy of an attempt that runs under its job's lock (the leader re-sent
        a publish whose confirm was lost): once that attempt lets go of the lock, report
        the copy to the schedulers like a redelivery (the database tells them whether the
        attempt started: a lock left by a create that was never run is no proof), and only
        then acknowledge it."""
        message = receipt.message
        log.info("duplicate_delivery", run_id=message.run_id, attempt=message.attempt)
        if not self.coord.wait_free(lock_name(message.job_id), WAIT_LIMIT, self.stop):
            self.outbox.put(*receipt.give_back())
            return
        self.outbox.put(Report(RedeliveredMessage(
            message.run_id, message.attempt, self.worker, utcnow(), message.dispatch)),
            *receipt.done())

    def _unlock(self, name: str, slot: Slot, outcome: Outcome | None) -> None:
        """Release a lock once nothing runs under it: at once (without waiting, so the
        outcome does not wait for ZooKeeper), or when a job thread that outlived its
        attempt ends."""
        with self._guard:
            self._locked.pop(id(slot), None)
            leftover = outcome.leftover if outcome is not None else None
            if leftover is not None:
                self._kept.add(name)
        if leftover is None:
            self.coord.release(name)
            return
        log.warning("lock_kept_for_leftover", lock=name, run_id=slot.message.run_id)

        def ended() -> None:
            with self._guard:
                self._kept.discard(name)
            self.coord.release(name)
        leftover.when_ended(ended)

    def fence(self) -> None:
        """The locks may be lost (the coordinator's lock-risk listener): stop every attempt
        under a lock within `lock_grace` (it fails, and retries); a job thread that ignores
        its cancel cannot be stopped, so if one still runs under a lock the session no
        longer holds, the worker exits (its service manager restarts it)."""
        grace = self.coord.lock_grace
        with self._guard:
            slots = list(self._locked.values())
        for slot in slots:
            slot.fenced = True
            if slot.context is not None:
                slot.context.kill_grace = min(slot.context.kill_grace, grace)
            slot.cancel.set()
        log.warning("lock_at_risk", stopping=[s.message.run_id for s in slots])
        check = threading.Timer(2 * grace, self._exit_if_unlocked)
        check.daemon = True
        check.start()

    def _exit_if_unlocked(self) -> None:
        with self._guard:
            unlocked = sorted(n for n in self._kept if not self.coord.holds(n))
        if unlocked:
            log.critical("worker_exiting", locks=unlocked, reason="a job thread that ignores "
                         "its cancel would run without its lock")
            os._exit(EXIT_UNLOCKED)

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
        return self._execute(message, slot.cancel, slot)

    def _close(self, receipt: Receipt, slot: Slot, outcome: Outcome, started: datetime) -> None:
        if slot.requeue and outcome.state == "cancelled":  # the worker stops: give it back
            self.outbox.put(*receipt.give_back())
            return
        self._conclude(receipt, receipt.message, outcome, started)

    def _execute(self, message: RunMessage, cancel: threading.Event,
                 slot: Slot | None = None) -> Outcome:
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
        if slot is not None:  # the context a lock at risk shortens the kill grace of
            slot.context = ctx
            if slot.fenced:  # fenced while the context was made
                ctx.kill_grace = min(ctx.kill_grace, self.coord.lock_grace)
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
        # The start deadline binds the first start only. Stamped with the newest epoch seen:
        # published now, the retry is no deposed leader's copy.
        retry = replace(message, attempt=message.attempt + 1, not_before=utcnow() + delay,
                        start_deadline=None, epoch=max(message.epoch, self.epochs.newest))
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


def start_deadline_missed(message: RunMessage, now: datetime) -> bool:
    """Whether a first attempt starting at `now` is past its start deadline (counted by the
    leader from the run's due time, jitter included). A retry has none to miss: the
    deadline is about the run's first start, not about when its backoff brings it back."""
    return (message.attempt == 1 and message.start_deadline is not None
            and now > message.start_deadline)


def _handed_back(delivery: Delivery) -> bool:
    """Whether an earlier consumer had this delivery: it died, or gave the run back."""
    return bool(delivery.redelivered or delivery.delivery_count
                or RETURNED in delivery.headers)
