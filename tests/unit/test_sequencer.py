"""The worker's broker thread sends a chunk of the outbox without waiting for confirms, yet
every acknowledgement follows the confirms of everything sent before it; a broken
connection hands back, in order, what was not confirmed."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from common import broker as topo
from common.messages import StatusMessage
from common.states import RunState
from workerd.outbox import Confirmation, Outbox, Publish, Report, Settle
from workerd.sequencer import Sequencer

T0 = datetime(2026, 12, 1, tzinfo=UTC)


class Wire:
    """Stands in for the connection: notes what is sent, in order, and holds each
    publish's confirm callback until the test confirms it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.unconfirmed: list[Callable[[bool], None]] = []

    def publish(self, exchange: str, routing_key: str, body: bytes,
                on_confirm: Callable[[bool], None], *, message_id: str | None = None,
                headers: dict[str, Any] | None = None) -> None:
        if exchange == topo.STATUS:
            self.sent.append(("report", [m["state"] for m in json.loads(body)]))
        else:
            self.sent.append(("publish", message_id))
        self.unconfirmed.append(on_confirm)

    def ack(self, tag: int, *, multiple: bool = False) -> None:
        self.sent.append(("ack", tag))

    def reject(self, tag: int, *, requeue: bool) -> None:
        self.sent.append(("reject", tag))

    def confirm(self, index: int = 0, ok: bool = True) -> None:
        """The broker confirms (or refuses) the `index`th publish still unconfirmed."""
        self.unconfirmed.pop(index)(ok)


def status(state: RunState) -> StatusMessage:
    return StatusMessage(run_id=1, attempt=1, state=state, at=T0)


def sequencer(refusals: list[str] | None = None) -> tuple[Sequencer, Wire]:
    wire = Wire()
    seq = Sequencer(wire, 2, (refusals if refusals is not None else []).append)
    seq.unsettled = {7, 8}
    return seq, wire


def failure_and_retry(generation: int) -> list[Any]:
    """What an attempt queues when it failed and has attempts left."""
    outbox = Outbox()
    outbox.put(Report(status(RunState.FAILED)),
               Publish(topo.RETRY, "default.normal", b"{}", "1.2", {"tier": "1"}, generation,
                       then=status(RunState.RETRYING)),
               Settle(7, generation))
    return list(outbox.take(10))


def test_a_report_that_follows_a_publish_is_sent_after_its_confirm_and_before_the_ack() -> None:
    seq, wire = sequencer()
    seq.perform(failure_and_retry(2))
    assert wire.sent == [("report", ["failed"]), ("publish", "1.2")]  # nothing waited
    wire.confirm()  # the report
    assert wire.sent[-1] == ("publish", "1.2")
    wire.confirm()  # the retry: now its follow-up
    assert wire.sent[-1] == ("report", ["retrying"])
    wire.confirm()
    assert wire.sent[-1] == ("ack", 7)
    assert seq.idle()


def test_a_publish_dropped_with_its_connection_takes_its_report_along() -> None:
    seq, wire = sequencer()
    seq.perform(failure_and_retry(1))  # generation 1 is gone: the delivery went back
    wire.confirm()
    assert wire.sent == [("report", ["failed"])]
    assert seq.idle()


def test_an_ack_waits_for_earlier_confirms_only() -> None:
    seq, wire = sequencer()
    seq.perform([Report(status(RunState.SUCCEEDED)), Settle(7, 2)])
    seq.perform([Report(status(RunState.RUNNING))])
    wire.confirm(1)  # the later report first: the ack still waits for the earlier one
    assert ("ack", 7) not in wire.sent
    wire.confirm(0)
    assert wire.sent[-1] == ("ack", 7)


def test_acks_released_together_become_one_cumulative_ack() -> None:
    seq, wire = sequencer()
    seq.perform([Report(status(RunState.SUCCEEDED)), Settle(7, 2)])
    seq.perform([Report(status(RunState.SUCCEEDED)), Settle(8, 2)])
    wire.confirm(1)
    wire.confirm(0)
    assert wire.sent[-1] == ("ack", 8) and ("ack", 7) not in wire.sent
    assert seq.unsettled == set()


def test_a_confirmation_is_settled_by_the_confirm_or_by_a_gone_connection() -> None:
    seq, wire = sequencer()
    current, stale = Confirmation(), Confirmation()
    seq.perform([Report(status(RunState.RUNNING), current, 2),
                 Report(status(RunState.RUNNING), stale, 1)])
    assert stale.settled and stale.wait(0) is False
    assert not current.settled
    wire.confirm()
    assert current.wait(0) is True


def test_abandon_hands_back_what_is_unconfirmed_in_order() -> None:
    seq, wire = sequencer()
    chunk = failure_and_retry(2)
    seq.perform(chunk)
    wire.confirm(1)  # the retry is confirmed, its follow-up sent but unconfirmed
    redo = seq.abandon()
    assert redo == [chunk[0], Report(status(RunState.RETRYING)), chunk[2]]
    assert seq.idle()


def test_a_send_that_fails_leaves_the_whole_chunk_to_abandon() -> None:
    class Failing(Wire):
        def publish(self, *args: Any, **kwargs: Any) -> None:
            raise OSError("connection reset")
    seq = Sequencer(Failing(), 2, lambda _why: None)
    chunk = failure_and_retry(2)
    with pytest.raises(OSError):
        seq.perform(chunk)
    assert seq.abandon() == chunk


def test_a_refused_message_asks_for_the_connection_to_go() -> None:
    refusals: list[str] = []
    seq, wire = sequencer(refusals)
    seq.perform(failure_and_retry(2))
    wire.confirm(1, ok=False)
    assert refusals and "zeitplan.retry" in refusals[0]
    assert ("ack", 7) not in wire.sent


def test_a_confirmation_wakes_its_waiter_once_and_times_out_unsettled() -> None:
    waiting = Confirmation()
    assert waiting.wait(0.01) is False and not waiting.settled
    waiting.settle(True)
    waiting.settle(False)  # a second settle changes nothing
    assert waiting.wait(0) is True and waiting.wait(0) is True
