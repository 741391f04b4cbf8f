"""The executor holds runs that arrive before their due time and starts them when due."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from common.broker import Delivery
from common.messages import HeartbeatMessage, RunMessage, StatusMessage, encode
from common.states import RunState
from workerd.attempt import AttemptRunner, Slot
from workerd.executor import Executor
from workerd.outbox import Outbox, Report, Settle
from workerd.receipt import Receipt


class Recorder:
    """Stands in for AttemptRunner: notes when each run was handed to a slot."""

    def __init__(self) -> None:
        self.started: dict[int, datetime] = {}
        self.stop = threading.Event()
        self.done = threading.Condition()

    def starts_plainly(self, delivery: Delivery, message: RunMessage, cancelled: bool) -> bool:
        return False  # every attempt goes through handle()

    def handle(self, delivery: Delivery, receipt: Receipt, slot: Slot, cancelled: bool) -> None:
        with self.done:
            self.started[receipt.message.run_id] = datetime.now(UTC)
            self.done.notify_all()

    def wait_for(self, count: int, timeout: float) -> None:
        with self.done:
            assert self.done.wait_for(lambda: len(self.started) >= count, timeout)


def delivery(run_id: int, *, not_before: datetime | None, priority: int = 5,
             attempt: int = 1, dispatch: int = 1) -> Delivery:
    message = RunMessage(
        run_id=run_id, job_id=run_id, scheduled_for=datetime.now(UTC), attempt=attempt,
        max_attempts=1, job_type="shell", payload={"command": "true"}, pool="default",
        priority=priority, concurrency="allow", timeout_s=None,
        backoff={"base": 1, "factor": 2, "cap": 60, "jitter": 0}, epoch=1,
        not_before=not_before, dispatch=dispatch)
    return Delivery(run_id, encode(message), "q", "default.normal", False, 0, {}, None)


def executor(slots: int = 1) -> tuple[Executor, Recorder, Outbox]:
    recorder, outbox = Recorder(), Outbox()
    ex = Executor(cast(AttemptRunner, recorder), outbox, slots)
    ex.start()
    return ex, recorder, outbox


def test_a_run_that_arrives_early_starts_at_its_due_time_not_before() -> None:
    ex, recorder, _ = executor()
    due = datetime.now(UTC) + timedelta(seconds=0.3)
    ex.submit(delivery(1, not_before=due), generation=1)
    recorder.wait_for(1, 5)
    assert due <= recorder.started[1] < due + timedelta(seconds=0.1)


def test_a_held_run_does_not_keep_a_due_one_waiting() -> None:
    ex, recorder, _ = executor()
    later = datetime.now(UTC) + timedelta(seconds=0.5)
    ex.submit(delivery(1, not_before=later, priority=9), generation=1)
    ex.submit(delivery(2, not_before=None, priority=0), generation=1)
    recorder.wait_for(2, 5)
    assert recorder.started[2] < later <= recorder.started[1]


def test_held_runs_start_in_due_order_whatever_their_arrival_order() -> None:
    ex, recorder, _ = executor()
    now = datetime.now(UTC)
    for run_id, offset in ((1, 0.4), (2, 0.2), (3, 0.3)):
        ex.submit(delivery(run_id, not_before=now + timedelta(seconds=offset)), generation=1)
    recorder.wait_for(3, 5)
    assert sorted(recorder.started, key=recorder.started.__getitem__) == [2, 3, 1]


def test_a_run_due_beyond_the_hold_limit_goes_straight_to_a_slot() -> None:
    # The attempt runner sends it to a retry tier; the executor must not sit on it.
    ex, recorder, _ = executor()
    ex.submit(delivery(1, not_before=datetime.now(UTC) + timedelta(seconds=30)), generation=1)
    recorder.wait_for(1, 2)


def test_drain_gives_held_runs_back_to_the_broker() -> None:
    ex, recorder, outbox = executor()
    ex.submit(delivery(7, not_before=datetime.now(UTC) + timedelta(seconds=0.8)),
              generation=3)
    ex.drain(timeout=0.1)
    given_back: list[Any] = outbox.take(10)
    assert given_back == [Settle(7, 3, ack=False, requeue=True)]
    time.sleep(1.0)
    assert recorder.started == {}


class Finisher(Recorder):
    """Queues an outcome report, as AttemptRunner does, before its slot is given up."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__()
        self.outbox = outbox

    def handle(self, delivery: Delivery, receipt: Receipt, slot: Slot, cancelled: bool) -> None:
        self.outbox.put(Report(StatusMessage(receipt.message.run_id, 1, RunState.SUCCEEDED,
                                             datetime.now(UTC))))
        super().handle(delivery, receipt, slot, cancelled)


def test_a_heartbeat_is_complete_sent_even_when_idle_and_after_the_outcomes_of_runs_it_omits(
        ) -> None:
    outbox = Outbox()
    runner = Finisher(outbox)
    ex = Executor(cast(AttemptRunner, runner), outbox, 1)
    before = datetime.now(UTC)
    ex.heartbeat("w1")
    ex.start()
    ex.submit(delivery(4, not_before=None), generation=1)
    runner.wait_for(1, 5)
    deadline = time.monotonic() + 5
    while ex.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    ex.heartbeat("w1")
    sent = [a.message for a in outbox.take(10) if isinstance(a, Report)]
    assert [type(m).__name__ for m in sent] == ["HeartbeatMessage", "StatusMessage",
                                                "HeartbeatMessage"]
    first, _, last = sent
    assert isinstance(first, HeartbeatMessage) and isinstance(last, HeartbeatMessage)
    assert first.complete and first.runs == () and first.at >= before
    assert last.complete and last.runs == ()
