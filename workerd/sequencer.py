"""The order in which the worker's broker thread carries out outbox actions, with
windowed confirms: nothing waits on the thread, yet every acknowledgement still follows the
confirms of everything sent before it.

A chunk of actions goes out as: its reports (as few status-queue messages as fit), then its
publishes in order (a publish's follow-up report once the publish is confirmed), then its
settlements, each released once every message sent before it, follow-ups included, is
confirmed. When the connection breaks, :meth:`Sequencer.abandon` hands back, in order, every
action not yet confirmed or settled, for the next connection (which drops those bound to
this one).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from common import broker as topo
from common.messages import encode_batches
from workerd.outbox import Action, Publish, Report, Settle

Confirm = Callable[[bool], None]


class Wire(Protocol):
    """What the sequencer needs of a connection (common.broker_async.AsyncBroker)."""

    def publish(self, exchange: str, routing_key: str, body: bytes, on_confirm: Confirm, *,
                message_id: str | None = None, headers: dict[str, Any] | None = None
                ) -> None: ...

    def ack(self, tag: int, *, multiple: bool = False) -> None: ...

    def reject(self, tag: int, *, requeue: bool) -> None: ...


class Sequencer:
    """Performs actions on one connection, `generation`; `on_refused` is told when the
    broker refuses or returns a message (the connection must then go: everything
    unconfirmed is sent again on the next)."""

    def __init__(self, wire: Wire, generation: int, on_refused: Callable[[str], None]) -> None:
        self.wire = wire
        self.generation = generation
        self.on_refused = on_refused
        self.unsettled: set[int] = set()  # run deliveries of this connection not yet settled
        self._seq = 0
        self._open: dict[int, list[Action]] = {}  # step -> its actions, while unconfirmed
        self._waiting: deque[tuple[int, Settle]] = deque()  # (last step before it, settle)

    def idle(self) -> bool:
        """True when nothing sent is unconfirmed and no settlement waits."""
        return not self._open and not self._waiting

    def perform(self, chunk: list[Action]) -> None:
        """Send a chunk of actions (see the module's docstring for the order)."""
        # Every action is registered before anything is sent, so a send that fails leaves
        # the whole chunk to abandon().
        sends = [self._reports([a for a in chunk if isinstance(a, Report)])]
        sends.extend(self._publish(a) for a in chunk
                     if isinstance(a, Publish) and self._current(a.generation))
        self._waiting.extend((self._seq, a) for a in chunk
                             if isinstance(a, Settle) and self._current(a.generation))
        for send in sends:
            send()
        self._release()

    def abandon(self) -> list[Action]:
        """Every action not yet confirmed or settled, in order; the sequencer is then
        empty (its connection is gone)."""
        redo = [a for actions in self._open.values() for a in actions]
        redo.extend(settle for _, settle in self._waiting)
        self._open.clear()
        self._waiting.clear()
        return redo

    # -- sending -------------------------------------------------------------------------
    def _reports(self, reports: list[Report]) -> Callable[[], None]:
        """Register the reports as one step; returns what sends them."""
        sent = []
        for report in reports:
            if self._current(report.generation):
                sent.append(report)
            elif report.confirm is not None:
                report.confirm.settle(False)  # its delivery went back with its connection
        if not sent:
            return _nothing
        bodies = encode_batches([r.message for r in sent])
        left = [len(bodies)]
        step = self._step(list(sent))

        def confirmed(ok: bool) -> None:
            if not ok:
                self.on_refused("a status report was refused by the broker")
                return
            left[0] -= 1
            if left[0] == 0:
                for report in sent:
                    if report.confirm is not None:
                        report.confirm.settle(True)
                self._finish(step)

        def send() -> None:
            for body in bodies:
                self.wire.publish(topo.STATUS, topo.STATUS, body, confirmed)
        return send

    def _publish(self, action: Publish) -> Callable[[], None]:
        """Register a publish as one step; returns what sends it."""
        step = self._step([action])
        then = action.then

        def reported(ok: bool) -> None:
            if ok:
                self._finish(step)
            else:
                self.on_refused("a status report was refused by the broker")

        def confirmed(ok: bool) -> None:
            if not ok:
                self.on_refused(f"a message to {action.exchange} was refused or unroutable")
            elif then is None:
                self._finish(step)
            else:  # from now on only the follow-up is left to send again
                self._open[step] = [Report(then)]
                self.wire.publish(topo.STATUS, topo.STATUS, encode_batches([then])[0],
                                  reported)

        def send() -> None:
            self.wire.publish(action.exchange, action.routing_key, action.body, confirmed,
                              message_id=action.message_id, headers=action.headers)
        return send

    def _step(self, actions: list[Action]) -> int:
        self._seq += 1
        self._open[self._seq] = actions
        return self._seq

    def _finish(self, step: int) -> None:
        self._open.pop(step, None)
        self._release()

    # -- settling ------------------------------------------------------------------------
    def _release(self) -> None:
        """Settle, in order, the waiting settlements whose earlier steps are confirmed."""
        first_open = next(iter(self._open), None)  # steps are opened in increasing order
        ready = []
        while self._waiting and (first_open is None or self._waiting[0][0] < first_open):
            ready.append(self._waiting.popleft()[1])
        if ready:
            self._settle(ready)

    def _settle(self, settles: list[Settle]) -> None:
        for action in settles:
            if not action.ack:
                self.wire.reject(action.tag, requeue=action.requeue)
                self.unsettled.discard(action.tag)
        acks = {a.tag for a in settles if a.ack}
        upto, single = cumulative_ack(self.unsettled, acks)
        if upto is not None:
            self.wire.ack(upto, multiple=True)
        for tag in single:
            self.wire.ack(tag)
        self.unsettled -= acks

    def _current(self, generation: int | None) -> bool:
        return generation is None or generation == self.generation


def cumulative_ack(unsettled: set[int], acks: set[int]) -> tuple[int | None, list[int]]:
    """Split `acks` into one cumulative ack (multiple=True up to the returned tag: every
    unsettled delivery up to it is being acked) and the tags left to ack one by one."""
    upto = None
    for tag in sorted(unsettled | acks):
        if tag not in acks:
            break
        upto = tag
    return upto, sorted(t for t in acks if upto is None or t > upto)


def _nothing() -> None:
    """Sends nothing."""
