"""An attempt under a job's lock: a copy of it is reported, never acknowledged silently;
a lock at risk stops the attempt (it fails); a job thread that outlives its attempt keeps
the lock until it really ends."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from typing import Any, cast

import pytest

from common.broker import Delivery
from common.messages import RedeliveredMessage, RunMessage, StatusMessage, decode, encode
from common.zk import Coordinator
from tests.unit.test_executor_hold import delivery
from workerd.attempt import EXIT_UNLOCKED, FENCED, AttemptRunner, Slot
from workerd.config import WorkerConfig, WorkerSection
from workerd.jobtypes import JobContext, Outcome, load_job_types
from workerd.jobtypes.strays import Strays
from workerd.outbox import Action, Outbox, Report, Settle
from workerd.receipt import Receipt


class Locks:
    """Stands in for the coordinator's lock methods: the job's lock held by `holder`
    (None: free), released by the test or by the attempt."""

    lock_grace = 0.2

    def __init__(self, holder: dict[str, Any] | None = None) -> None:
        self.holder_data = holder
        self.freed = threading.Event()
        self.released: list[tuple[str, float]] = []
        self.safe = True

    def try_lock(self, name: str, data: dict[str, Any]) -> bool:
        if self.holder_data is not None:
            return False
        self.holder_data = data
        return True

    def holder(self, name: str) -> dict[str, Any] | None:
        return self.holder_data

    def wait_free(self, name: str, timeout: float, stop: threading.Event) -> bool:
        return self.freed.wait(timeout)

    def release(self, name: str) -> threading.Event:
        self.released.append((name, time.monotonic()))
        self.holder_data = None
        done = threading.Event()
        done.set()
        return done

    def holds(self, name: str) -> bool:
        return self.safe


class Broker(threading.Thread):
    """Confirms every `running` report and collects every action, as the broker thread
    would."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__(daemon=True)
        self.outbox = outbox
        self.actions: list[Action] = []
        self.changed = threading.Condition()

    def run(self) -> None:
        while True:
            for action in self.outbox.take(100):
                if isinstance(action, Report) and action.confirm is not None:
                    action.confirm.settle(True)
                with self.changed:
                    self.actions.append(action)
                    self.changed.notify_all()
            time.sleep(0.005)

    def wait_settled(self, timeout: float = 5.0) -> list[Action]:
        """Every action up to the delivery's settlement."""
        with self.changed:
            assert self.changed.wait_for(
                lambda: any(isinstance(a, Settle) for a in self.actions), timeout)
            return list(self.actions)


def forbid(run_id: int, **fields: Any) -> tuple[Delivery, Receipt]:
    plain = delivery(run_id, not_before=None)
    message = replace(cast(RunMessage, decode(plain.body)), concurrency="forbid", **fields)
    body = encode(message)
    return (replace(plain, body=body),
            Receipt(plain.tag, 1, plain.routing_key, message, body))


def runner(locks: Locks, job: Any, kill_grace: float = 5.0) -> tuple[AttemptRunner, Broker]:
    outbox = Outbox()
    broker = Broker(outbox)
    broker.start()
    config = WorkerConfig(worker=WorkerSection(kill_grace=kill_grace))
    return AttemptRunner(config, cast(Coordinator, locks), outbox, {"shell": job},
                         threading.Event()), broker


def statuses(actions: list[Action]) -> list[Any]:
    return [a.message for a in actions if isinstance(a, Report)]


def test_a_copy_of_a_running_attempt_is_reported_once_the_lock_is_free_not_acked_silently(
        ) -> None:
    locks = Locks({"run_id": 52, "attempt": 1, "worker": "worker-1"})
    attempts, broker = runner(locks, None)
    found, receipt = forbid(52, job_id=7, dispatch=3)
    handling = threading.Thread(target=attempts.handle,
                                args=(found, receipt, Slot(receipt.message, threading.Event()),
                                      False))
    handling.start()
    time.sleep(0.2)  # the copy waits for the attempt that holds the lock: nothing settled
    assert broker.actions == []
    locks.freed.set()
    actions = broker.wait_settled()
    handling.join(5)
    reports = statuses(actions)
    assert len(reports) == 1 and isinstance(reports[0], RedeliveredMessage)
    assert (reports[0].run_id, reports[0].attempt, reports[0].dispatch) == (52, 1, 3)
    assert isinstance(actions[-1], Settle) and actions[-1].ack


class Stubborn:
    """A job type that ignores its cancel for `linger` seconds past it."""

    def __init__(self, linger: float) -> None:
        self.linger = linger
        self.strays = Strays("test calls")
        self.ended = threading.Event()

    def run(self, ctx: JobContext) -> Outcome:
        stray = self.strays.track()
        assert stray is not None

        def call() -> None:
            ctx.cancel.wait(10)
            time.sleep(self.linger)
            self.ended.set()
            stray.end()
        threading.Thread(target=call, daemon=True).start()
        ctx.cancel.wait(10)
        stray.abandon()
        return Outcome("cancelled", error="cancelled", leftover=stray)


def executing(attempts: AttemptRunner, found: Delivery, receipt: Receipt) -> Slot:
    """Handle the delivery on a thread of its own; returns its slot once it executes."""
    slot = Slot(receipt.message, threading.Event())
    threading.Thread(target=attempts.handle, args=(found, receipt, slot, False),
                     daemon=True).start()
    deadline = time.monotonic() + 5
    while slot.context is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert slot.context is not None
    return slot


def test_a_lock_at_risk_stops_the_attempt_under_it_which_fails() -> None:
    locks = Locks()
    attempts, broker = runner(locks, load_job_types()["shell"], kill_grace=30.0)
    found, receipt = forbid(60, payload={"command": "trap '' TERM; sleep 30"},
                            max_attempts=1)
    executing(attempts, found, receipt)
    time.sleep(0.2)  # the shell job's process is up
    fenced_at = time.monotonic()
    attempts.fence()
    actions = broker.wait_settled(5)
    # SIGTERM is ignored: SIGKILL after the lock's grace, not the configured 30 s.
    assert locks.released and locks.released[0][1] - fenced_at < locks.lock_grace + 0.5
    failed = [s for s in statuses(actions) if isinstance(s, StatusMessage)
              and s.state == "failed"]
    assert failed and failed[0].error == FENCED


def test_a_job_thread_that_outlives_its_attempt_keeps_the_lock_until_it_ends() -> None:
    locks = Locks()
    job = Stubborn(linger=0.5)
    attempts, broker = runner(locks, job)
    found, receipt = forbid(61)
    slot = executing(attempts, found, receipt)
    slot.cancel.set()
    broker.wait_settled(5)  # the attempt is over and reported...
    assert not job.ended.is_set() and locks.released == []  # ...its thread still runs
    assert job.ended.wait(5)
    deadline = time.monotonic() + 5
    while not locks.released and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [name for name, _ in locks.released] == ["job-61"]


def test_strays_are_capped_and_counted_until_they_end() -> None:
    pen = Strays("test calls", limit=2)
    first, second = pen.track(), pen.track()
    assert first is not None and second is not None
    assert first.abandon() and second.abandon()
    assert pen.track() is None
    assert pen.refusal().startswith("refused: 2 test calls left running")
    ended: list[bool] = []
    first.when_ended(lambda: ended.append(True))
    first.end()
    assert ended == [True] and pen.count == 1
    third = pen.track()
    assert third is not None
    third.end()
    assert not third.abandon() and pen.count == 1  # it ended before its attempt did


def test_a_job_thread_left_under_a_lost_lock_makes_the_worker_exit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    exits: list[int] = []
    exited = threading.Event()

    def exit_now(status: int) -> None:
        exits.append(status)
        exited.set()
    monkeypatch.setattr(os, "_exit", exit_now)
    locks = Locks()
    job = Stubborn(linger=5.0)  # ignores its cancel far longer than the lock's grace
    attempts, broker = runner(locks, job)
    found, receipt = forbid(62)
    executing(attempts, found, receipt)
    locks.safe = False  # the session that holds the lock is gone
    attempts.fence()
    broker.wait_settled(5)
    assert exited.wait(5) and exits == [EXIT_UNLOCKED]
    assert not job.ended.is_set() and locks.released == []


def test_a_job_thread_left_under_a_lock_still_held_does_not_make_the_worker_exit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "_exit", lambda status: pytest.fail(f"exit {status}"))
    locks = Locks()
    job = Stubborn(linger=1.0)
    attempts, broker = runner(locks, job)
    found, receipt = forbid(63)
    executing(attempts, found, receipt)
    attempts.fence()  # the session came back in time: `holds` stays true
    broker.wait_settled(5)
    assert job.ended.wait(5)
    deadline = time.monotonic() + 5
    while not locks.released and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [name for name, _ in locks.released] == ["job-63"]
