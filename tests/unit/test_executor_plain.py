"""Plain attempts (first delivery, due, `allow`) are reported `running` by the executor
itself, from the thread that feeds it, and executed by a slot only once that report is
confirmed; at most as many as the slots are in hand at once."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any, cast

from common.messages import CancelMessage, RedeliveredMessage, StatusMessage
from common.states import RunState
from common.zk import Coordinator
from tests.unit.test_executor_hold import delivery
from workerd.attempt import AttemptRunner
from workerd.config import WorkerConfig
from workerd.executor import Executor
from workerd.jobtypes import JobContext, Outcome
from workerd.outbox import Action, Outbox, Report, Settle


class Gate:
    """A job type whose attempts each wait until the test lets them end."""

    def __init__(self) -> None:
        self.executed: list[int] = []
        self.finish = threading.Event()
        self.changed = threading.Condition()

    def run(self, ctx: JobContext) -> Outcome:
        with self.changed:
            self.executed.append(ctx.key.run_id)
            self.changed.notify_all()
        self.finish.wait(10)
        return Outcome("succeeded", exit_code=0)

    def wait_executed(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.executed) >= count, 5)


class Rig:
    """An executor with a real AttemptRunner whose `running` reports are collected here,
    as the broker thread would send them, for the test to confirm or refuse."""

    def __init__(self, slots: int) -> None:
        self.gate = Gate()
        self.outbox = Outbox()
        runner = AttemptRunner(WorkerConfig(), cast(Coordinator, None), self.outbox,
                               {"shell": self.gate}, threading.Event())
        self.ex = Executor(runner, self.outbox, slots)
        self.sent: list[Report] = []
        self._lock = threading.Lock()
        self.ex.send = self._send
        self.ex.start()

    def _send(self, actions: list[Action]) -> None:
        with self._lock:
            self.sent.extend(cast(list[Report], actions))

    def reported(self) -> list[int]:
        """Run ids reported `running` so far, in order."""
        with self._lock:
            return [cast(StatusMessage, r.message).run_id for r in self.sent]

    def confirm(self, run_id: int, ok: bool = True) -> None:
        with self._lock:
            report = next(r for r in self.sent
                          if cast(StatusMessage, r.message).run_id == run_id)
        assert report.confirm is not None and report.generation == 1
        report.confirm.settle(ok)

    def outcomes(self, count: int) -> list[Any]:
        """The first `count` actions the slots queue on the outbox (waiting up to 5 s)."""
        taken: list[Any] = []
        deadline = time.monotonic() + 5
        while len(taken) < count and time.monotonic() < deadline:
            taken.extend(self.outbox.take(count - len(taken)))
            time.sleep(0.01)
        return taken


def test_a_plain_attempt_executes_only_once_its_running_report_is_confirmed() -> None:
    rig = Rig(slots=1)
    rig.ex.submit(delivery(1, not_before=None), generation=1)
    assert rig.reported() == [1]
    report = rig.sent[0]
    assert isinstance(report.message, StatusMessage)
    assert report.message.state == RunState.RUNNING
    assert rig.ex.running() == [(1, 1)]  # listed from before its report went out
    time.sleep(0.2)
    assert rig.gate.executed == []
    rig.confirm(1)
    rig.gate.wait_executed(1)
    rig.gate.finish.set()
    done = rig.outcomes(2)
    assert [type(a).__name__ for a in done] == ["Report", "Settle"]
    assert done[0].message.state == RunState.SUCCEEDED and done[1] == Settle(1, 1)


def test_an_attempt_whose_report_is_not_confirmed_never_runs_and_goes_back() -> None:
    rig = Rig(slots=1)
    rig.ex.submit(delivery(2, not_before=None), generation=1)
    rig.confirm(2, ok=False)  # its connection is gone
    assert rig.outcomes(1) == [Settle(2, 1, ack=False, requeue=True)]
    assert rig.ex.running() == []
    time.sleep(0.1)
    assert rig.gate.executed == []


def test_no_more_than_the_slots_are_in_hand_and_the_most_urgent_go_first() -> None:
    rig = Rig(slots=2)
    for run_id, priority in ((1, 1), (2, 9), (3, 5), (4, 7)):
        rig.ex.submit(delivery(run_id, not_before=None, priority=priority), generation=1)
    assert rig.reported() == [1, 2]  # room for two: the first two arrivals took it
    rig.confirm(1)
    rig.confirm(2)
    rig.gate.finish.set()
    deadline = time.monotonic() + 5
    while len(rig.reported()) < 4 and time.monotonic() < deadline:
        for run_id in rig.reported():
            rig.confirm(run_id)  # a second settle changes nothing
        time.sleep(0.01)
    assert rig.reported() == [1, 2, 4, 3]  # then by priority, as room was made
    rig.confirm(3)
    rig.confirm(4)
    rig.gate.wait_executed(4)
    assert sorted(rig.gate.executed) == [1, 2, 3, 4]


def test_a_cancel_between_the_report_and_the_start_ends_the_attempt_unexecuted() -> None:
    rig = Rig(slots=1)
    rig.ex.submit(delivery(5, not_before=None), generation=1)
    rig.ex.cancel(CancelMessage(run_id=5, job_id=None))
    rig.confirm(5)
    done = rig.outcomes(2)
    assert [type(a).__name__ for a in done] == ["Report", "Settle"]
    assert done[0].message.state == RunState.CANCELLED
    assert rig.gate.executed == []


def test_an_attempt_that_needs_a_decision_goes_to_a_slot_unreported() -> None:
    rig = Rig(slots=1)
    again = replace(delivery(6, not_before=None, dispatch=4), redelivered=True)
    rig.ex.submit(again, generation=1)
    done = rig.outcomes(2)
    assert rig.reported() == []
    assert isinstance(done[0].message, RedeliveredMessage) and done[1] == Settle(6, 1)
    assert done[0].message.dispatch == 4  # which copy came back: the schedulers act once


def test_drain_gives_back_what_waits_and_lets_what_is_in_hand_finish() -> None:
    rig = Rig(slots=2)
    for run_id in (7, 8, 9):
        rig.ex.submit(delivery(run_id, not_before=None), generation=1)
    drained = threading.Thread(target=rig.ex.drain, args=(10.0,))
    drained.start()
    time.sleep(0.1)
    assert rig.outbox.take(10) == [Settle(9, 1, ack=False, requeue=True)]
    assert drained.is_alive()  # two attempts are in hand
    rig.confirm(7)
    rig.confirm(8)
    rig.gate.finish.set()
    drained.join(5)
    assert not drained.is_alive()
    assert sorted(rig.gate.executed) == [7, 8]
    assert [a for a in rig.outbox.take(10) if isinstance(a, Settle)] == [Settle(7, 1),
                                                                          Settle(8, 1)]
