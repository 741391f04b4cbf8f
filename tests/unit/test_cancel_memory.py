"""A worker's cancellation memory: durable marks (from ZooKeeper) and fanout messages."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from common.cancels import mark, parse, targets_of
from common.messages import CancelMessage, RunMessage, StatusMessage, decode
from common.states import RunState
from tests.unit.test_executor_hold import delivery
from tests.unit.test_executor_plain import Rig
from workerd.cancel_memory import CancelMemory
from workerd.jobtypes import JobContext, Outcome


def run(run_id: int, job_id: int) -> RunMessage:
    message = decode(delivery(run_id, not_before=None).body)
    assert isinstance(message, RunMessage)
    return replace(message, job_id=job_id)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_mark_names_round_trip_and_other_names_are_not_marks() -> None:
    assert mark("run", 12) == "run-12" and parse("run-12") == ("run", 12)
    assert mark("job", 7) == "job-7" and parse("job-7") == ("job", 7)
    assert [parse(n) for n in ("lock-3", "run-", "run-x", "job", "")] == [None] * 5
    with pytest.raises(ValueError):
        mark("pool", 1)


def test_a_fanout_cancellation_is_forgotten_after_its_window() -> None:
    clock = Clock()
    memory = CancelMemory(window=60.0, clock=clock)
    memory.hear(CancelMessage(run_id=5, job_id=None))
    assert memory.covers(run(5, 1)) and not memory.covers(run(6, 1))
    clock.now += 61
    assert not memory.covers(run(5, 1))


def test_a_durable_mark_covers_a_run_however_old_the_cancellation_is() -> None:
    clock = Clock()
    memory = CancelMemory(window=0.0, clock=clock)  # no fanout memory at all
    memory.hear(CancelMessage(run_id=5, job_id=None))
    assert not memory.covers(run(5, 1))
    memory.set_marks(["run-5", "job-9", "not-a-mark"])
    clock.now += 10 * 86400
    assert memory.covers(run(5, 1))
    assert memory.covers(run(77, 9))  # any run of a cancelled job
    assert not memory.covers(run(6, 1))


def test_set_marks_returns_only_the_new_ones_and_a_removed_mark_stops_covering() -> None:
    memory = CancelMemory()
    assert memory.set_marks(["run-1", "job-2"]) == {("run", 1), ("job", 2)}
    assert memory.set_marks(["run-1", "job-2", "run-3"]) == {("run", 3)}
    assert memory.set_marks(["run-3"]) == set()
    assert not memory.covers(run(1, 50)) and memory.covers(run(3, 50))


def test_a_fanout_message_names_its_run_or_its_job() -> None:
    assert targets_of(CancelMessage(run_id=4, job_id=None)) == {("run", 4)}
    assert targets_of(CancelMessage(run_id=None, job_id=8)) == {("job", 8)}


def _outcome(rig: Rig) -> StatusMessage:
    done = rig.outcomes(2)
    assert [type(a).__name__ for a in done] == ["Report", "Settle"]
    assert isinstance(done[0].message, StatusMessage)
    return done[0].message


def test_a_delivery_of_a_marked_job_is_reported_cancelled_and_never_executed() -> None:
    rig = Rig(slots=1)
    rig.ex.cancels = CancelMemory(window=0.0)  # only the durable marks count
    rig.ex.marks_changed(["job-31"])
    rig.ex.submit(delivery(31, not_before=None, attempt=2), generation=1)
    status = _outcome(rig)
    assert (status.run_id, status.attempt, status.state) == (31, 2, RunState.CANCELLED)
    assert rig.reported() == [] and rig.gate.executed == []


class UntilCancelled:
    """A job type that runs until it is told to stop."""

    def __init__(self) -> None:
        self.started = threading.Event()

    def run(self, ctx: JobContext) -> Outcome:
        self.started.set()
        return Outcome("cancelled") if ctx.cancel.wait(5) else Outcome("succeeded")


def test_a_new_mark_stops_the_attempt_running_here() -> None:
    rig = Rig(slots=1)
    job = UntilCancelled()
    rig.ex.runner.job_types["shell"] = job
    rig.ex.submit(delivery(32, not_before=None), generation=1)
    rig.confirm(32)
    assert job.started.wait(5)
    rig.ex.marks_changed(["run-32"])  # its fanout message missed this worker
    assert _outcome(rig).state == RunState.CANCELLED
