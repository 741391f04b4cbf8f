"""The worker's execution slots: runs held until due, a local priority buffer, `running`
reports sent ahead, cancellation, heartbeats, drain.

An attempt that needs no decision before it starts (``AttemptRunner.starts_plainly``) is
reported `running` from the broker thread and handed to a slot once that report is
confirmed: it crosses threads twice (to its slot, and its outcome back), and no slot thread
blocks on the broker. Any other attempt (redelivered, cancelled, not yet due, past its start
deadline, or under a lock policy) goes to a slot that decides it, reports it `running` and
waits for the confirm itself. At most `slots` attempts are in hand at once (reported,
executing, or queued to a slot), so a confirmed attempt finds a slot free: none reported
`running` waits for a slot, and on drain none is given back unstarted. The rest wait in
the buffer, most urgent first.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import structlog

from common.broker import Delivery
from common.cancels import Target, targets_of
from common.errors import MessageError, ZeitplanError
from common.messages import CancelMessage, HeartbeatMessage, RunMessage, decode_batch
from workerd import metrics
from workerd.attempt import HOLD_LIMIT, AttemptRunner, Slot, utcnow
from workerd.cancel_memory import CancelMemory
from workerd.epochs import Epochs
from workerd.outbox import Action, Confirmation, Outbox, Report, Settle
from workerd.receipt import Pack, Receipt

log = structlog.get_logger()

Entry = tuple[int, int, Delivery, Receipt]  # (-priority, order, delivery, receipt)


@dataclass(frozen=True)
class Begun:
    """An attempt whose `running` report is confirmed: its slot executes it at once."""

    key: int
    slot: Slot
    receipt: Receipt
    started: datetime


class Executor:
    """Runs deliveries on `slots` threads, most urgent first.

    `send` takes `running` reports to the broker, and `wake` asks for :meth:`fill` from any
    thread; the worker points them at its broker thread (which alone calls `fill` there).
    Left alone, reports go through the outbox and `wake` fills at once.
    """

    def __init__(self, runner: AttemptRunner, outbox: Outbox, slots: int,
                 epochs: Epochs | None = None) -> None:
        self.runner = runner
        self.epochs = epochs or Epochs()  # a run message older than the newest is dropped
        self.outbox = outbox
        self.slots = slots
        self.send: Callable[[list[Action]], None] = lambda actions: outbox.put(*actions)
        self.wake: Callable[[], None] = self.fill
        self._buffer: list[Entry] = []  # a heap, under _lock
        # Runs that arrived before their time (the leader dispatches a little early), by
        # due time; the `hold` thread moves each to the buffer when it is due.
        self._held: list[tuple[datetime, Entry]] = []
        self._held_changed = threading.Condition()
        self._ready: queue.SimpleQueue[Entry | Begun] = queue.SimpleQueue()  # for the slots
        self._in_hand = 0  # under _lock
        self._order = itertools.count()
        # Keyed by a serial per slot, not by run: a re-sent copy or a later attempt of a
        # run may come to this worker while the first still executes, and must not hide it.
        self._running: dict[int, Slot] = {}
        self._serial = itertools.count()
        self._lock = threading.Lock()
        self.cancels = CancelMemory()
        self._taking = threading.Event()
        self._taking.set()
        self._threads = [threading.Thread(target=self._serve, name=f"slot-{n}", daemon=True)
                         for n in range(slots)]
        self._threads.append(threading.Thread(target=self._release_held, name="hold",
                                              daemon=True))

    def start(self) -> None:
        """Start the slot threads."""
        for thread in self._threads:
            thread.start()

    def resize(self, slots: int) -> None:
        """Execute up to `slots` attempts at once from now on (a config reload): more slot
        threads start at once; with fewer, the attempts in hand finish and no more are taken
        until they are under the new number (a surplus slot thread idles)."""
        with self._lock:
            self.slots = slots
            started = sum(1 for thread in self._threads if thread.name.startswith("slot-"))
        for n in range(started, slots):
            thread = threading.Thread(target=self._serve, name=f"slot-{n}", daemon=True)
            self._threads.append(thread)
            if self._threads[0].is_alive():  # else start() starts it with the others
                thread.start()
        self.wake()

    # -- called from the broker thread -------------------------------------------------
    def submit(self, delivery: Delivery, generation: int) -> None:
        """Accept a delivery of one run message or a pack of them: parse it now; a malformed
        one is dead-lettered at once, whole."""
        try:
            messages = decode_batch(delivery.body)
            wrong = [m for m in messages if not isinstance(m, RunMessage)]
            if wrong or not messages:
                raise MessageError(f"a {wrong[0].type} message on a run queue" if wrong
                                   else "an empty pack of runs")
        except MessageError as exc:
            metrics.REJECTED.inc()
            log.warning("run_message_rejected", error=str(exc), queue=delivery.queue)
            self.outbox.put(Settle(delivery.tag, generation, ack=False, requeue=False))
            return
        runs = [m for m in messages if isinstance(m, RunMessage)]
        pack = Pack(len(runs)) if len(runs) > 1 else None
        now = utcnow()
        for message in runs:
            receipt = Receipt(delivery.tag, generation, delivery.routing_key, message,
                              None if pack else delivery.body, pack)
            if self.epochs.stale(message.epoch):
                self.runner.drop_stale(receipt, self.epochs.newest)
                continue
            entry = (-message.priority, next(self._order), delivery, receipt)
            due = message.not_before
            if due is not None and 0 < (due - now).total_seconds() <= HOLD_LIMIT:
                with self._held_changed:
                    heapq.heappush(self._held, (due, entry))
                    self._held_changed.notify()
            else:
                with self._lock:
                    heapq.heappush(self._buffer, entry)
        self.wake()  # not fill(): the deliveries of one I/O loop pass are filled together

    def fill(self) -> None:
        """Take buffered attempts in hand while there is room, most urgent first: report
        the plain ones `running` (through `send`), queue the others to a slot."""
        with self._lock:
            taken = []
            while self._buffer and self._in_hand < self.slots and self._taking.is_set():
                taken.append(heapq.heappop(self._buffer))
                self._in_hand += 1
        reports: list[Action] = []
        for entry in taken:
            _, _, delivery, receipt = entry
            message = receipt.message
            if not self.runner.starts_plainly(delivery, message, self.cancels.covers(message)):
                self._ready.put(entry)
                continue
            key, slot = self._enlist(message)
            begun = Begun(key, slot, receipt, utcnow())
            reports.append(self.runner.running_report(
                receipt, begun.started, Confirmation(partial(self._confirmed, begun))))
        if reports:
            self.send(reports)

    def _confirmed(self, begun: Begun, ok: bool) -> None:
        if ok:
            self._ready.put(begun)
        else:
            self.runner.abandon(begun.receipt)
            self._let_go(begun.key)

    def _release_held(self) -> None:
        while True:
            with self._held_changed:
                now = utcnow()
                due = []
                while self._held and self._held[0][0] <= now:
                    due.append(heapq.heappop(self._held)[1])
                if not due:
                    self._held_changed.wait((self._held[0][0] - now).total_seconds()
                                            if self._held else None)
                    continue
            with self._lock:
                for entry in due:
                    heapq.heappush(self._buffer, entry)
            self.wake()

    def cancel(self, message: CancelMessage) -> None:
        """A cancellation from the control fanout: stop matching attempts now, and remember
        it for later deliveries (a queued message or a retry waiting in a tier queue) until
        its durable mark arrives."""
        self.cancels.hear(message)
        self._stop_matching(targets_of(message), message.reason)

    def marks_changed(self, names: list[str]) -> None:
        """The durable cancellation marks changed (kazoo's thread; the first call comes
        before the worker takes work): remember them all, and stop the attempts of new
        ones running here (their fanout message may have missed this worker)."""
        self._stop_matching(self.cancels.set_marks(names), "cancelled")

    def _stop_matching(self, targets: set[Target], reason: str) -> None:
        if not targets:
            return
        with self._lock:
            for slot in self._running.values():
                if {("job", slot.message.job_id), ("run", slot.message.run_id)} & targets:
                    log.info("attempt_cancelling", run_id=slot.message.run_id, reason=reason)
                    slot.cancel.set()

    # -- slots -------------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            task = self._ready.get()
            if isinstance(task, Begun):
                key, receipt = task.key, task.receipt
                work = partial(self.runner.proceed, receipt, task.slot, task.started)
            else:
                _, _, delivery, receipt = task
                if not self._taking.is_set():  # draining: give it back untouched
                    self.outbox.put(*receipt.give_back())
                    self._let_go(None)
                    continue
                message = receipt.message
                key, slot = self._enlist(message)
                work = partial(self.runner.handle, delivery, receipt, slot,
                               self.cancels.covers(message))
            try:
                work()
            except ZeitplanError as exc:  # ZooKeeper down while taking a lock, say
                log.warning("attempt_not_started", run_id=receipt.message.run_id,
                            error=str(exc))
                self.runner.stop.wait(1.0)  # do not spin while the service is down
                self.outbox.put(*receipt.give_back())
            except Exception:  # noqa: BLE001 - never lose a slot thread
                log.exception("unexpected error, please report", run_id=receipt.message.run_id)
                self.outbox.put(*receipt.give_back())
            finally:
                self._let_go(key)

    def _enlist(self, message: RunMessage) -> tuple[int, Slot]:
        """List an attempt as running (before its `running` report is queued)."""
        slot = Slot(message, threading.Event())
        with self._lock:
            key = next(self._serial)
            self._running[key] = slot
            metrics.RUNNING.set(len(self._running))
        return key, slot

    def _let_go(self, key: int | None) -> None:
        """An attempt is out of hand (its outcome queued): unlist it, make room."""
        with self._lock:
            if key is not None:
                del self._running[key]
            self._in_hand -= 1
            metrics.RUNNING.set(len(self._running))
        self.wake()

    # -- heartbeats and drain ----------------------------------------------------------
    def running(self) -> list[tuple[int, int]]:
        """(run_id, attempt) of every attempt executing now."""
        with self._lock:
            return sorted({(s.message.run_id, s.message.attempt)
                           for s in self._running.values()})

    def heartbeat(self, worker: str) -> None:
        """Report the running attempts as alive, and as all this worker executes: a slot
        leaves `running()` only after queuing its outcome, so the outcome of every attempt
        missing from the list travels ahead of this message."""
        at = utcnow()  # before the list: an attempt that starts meanwhile starts after `at`
        self.outbox.put(Report(HeartbeatMessage(worker, at, tuple(self.running()),
                                                complete=True)))

    def drain(self, timeout: float) -> None:
        """Stop taking work, give buffered deliveries back, let running attempts finish up to
        `timeout` seconds, then stop them and give their messages back too."""
        self._taking.clear()
        self._give_back_buffered()
        deadline = time.monotonic() + timeout
        while self._busy() and time.monotonic() < deadline:
            time.sleep(0.1)
        with self._lock:
            for slot in self._running.values():
                slot.requeue = True
                slot.cancel.set()
        while self._busy() and time.monotonic() < deadline + self.runner.cfg.kill_grace + 5:
            time.sleep(0.1)
        self._give_back_buffered()

    def _busy(self) -> bool:
        with self._lock:
            return self._in_hand > 0

    def _give_back_buffered(self) -> None:
        with self._held_changed:
            held, self._held = self._held, []
        with self._lock:
            buffered, self._buffer = self._buffer, []
        for _, _, _, receipt in [entry for _, entry in held] + buffered:
            self.outbox.put(*receipt.give_back())
