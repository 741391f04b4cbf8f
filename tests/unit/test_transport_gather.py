"""The worker's broker thread: `running` reports sent while it fills travel with the
queued actions in one hand-over."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from common.broker_async import AsyncBroker
from common.messages import StatusMessage
from common.states import RunState
from workerd.outbox import Action, Outbox, Report, Settle
from workerd.sequencer import Sequencer
from workerd.transport import Transport

T0 = datetime(2026, 12, 1, tzinfo=UTC)


class Loop:
    """Stands in for the connection's I/O loop: connected, callbacks run when asked."""

    connected = True

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []

    def call_threadsafe(self, fn: Callable[[], None]) -> None:
        self.callbacks.append(fn)


class Recorder:
    """Stands in for the sequencer: notes each hand-over."""

    def __init__(self) -> None:
        self.chunks: list[list[Action]] = []

    def perform(self, chunk: list[Action]) -> None:
        self.chunks.append(list(chunk))


def report(run_id: int) -> Report:
    return Report(StatusMessage(run_id=run_id, attempt=1, state=RunState.RUNNING, at=T0))


def transport(on_room: Callable[[Transport], None]) -> tuple[Transport, Outbox, Recorder]:
    outbox = Outbox()
    t = Transport(cast(AsyncBroker, Loop()), outbox, ("default",), 8,
                  lambda delivery, generation: None, lambda message: None, lambda: None)
    t.on_room = lambda: on_room(t)
    recorder = Recorder()
    t.sequencer = cast(Sequencer, recorder)
    return t, outbox, recorder


def test_reports_sent_while_filling_join_the_queued_actions_in_one_hand_over() -> None:
    t, outbox, recorder = transport(lambda t: t.send([report(2)]))
    settle = Settle(7, 1)
    outbox.put(settle)
    t._perform()
    assert len(recorder.chunks) == 1
    chunk: list[Any] = recorder.chunks[0]
    assert chunk[0] == settle and chunk[1].message.run_id == 2


def test_a_fill_that_fails_half_way_keeps_what_it_sent_and_what_was_taken() -> None:
    calls: list[int] = []

    def fill(t: Transport) -> None:
        calls.append(1)
        t.send([report(2)])
        if len(calls) == 1:
            raise RuntimeError("a bug in the executor")

    t, outbox, recorder = transport(fill)
    outbox.put(Settle(7, 1))
    with pytest.raises(RuntimeError):
        t._perform()
    assert recorder.chunks == []
    t._perform()
    assert [getattr(a, "tag", None) or a.message.run_id for a in recorder.chunks[0]] == [7, 2, 2]  # type: ignore[union-attr]


def test_a_wake_that_comes_while_filling_schedules_another_pass() -> None:
    t, outbox, recorder = transport(lambda t: t.outbox.nudge())  # a slot made free meanwhile
    outbox.put(Settle(7, 1))
    loop = cast(Loop, t.broker)
    assert len(loop.callbacks) == 1
    t._perform()
    assert len(loop.callbacks) == 2


def test_reports_sent_outside_a_hand_over_go_with_the_next() -> None:
    t, outbox, recorder = transport(lambda t: None)
    t.send([report(3)])
    assert recorder.chunks == []
    t._perform()
    assert [[a.message.run_id for a in c] for c in recorder.chunks] == [[3]]  # type: ignore[union-attr]


def test_reports_sent_without_a_connection_wait_for_the_next() -> None:
    t, outbox, recorder = transport(lambda t: None)
    t.sequencer = None
    t.send([report(5)])
    assert recorder.chunks == [] and [a.message.run_id for a in t.carry] == [5]  # type: ignore[union-attr]
