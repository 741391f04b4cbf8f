"""What executor threads hand to the broker thread, in order.

The broker thread performs the actions first in, first out, so an attempt's
acknowledgement always comes after the publishes (outcome, retry, dead letter) queued
before it. Consecutive status-queue messages travel together in one publish.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.messages import StatusQueueMessage
from workerd.latch import Latch


@dataclass(frozen=True)
class Publish:
    """Publish a message (confirmed) to an exchange."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str | None = None
    headers: dict[str, Any] | None = None
    # The connection generation of the delivery this publish settles: when that connection
    # is gone, the delivery returns to its queue and the schedulers decide its fate, so the
    # publish is dropped instead of duplicating their decision.
    generation: int | None = None
    # Reported once this publish is confirmed (and dropped with it): the schedulers then
    # know it was made (a run is `retrying` only once its retry message is with the broker).
    then: StatusQueueMessage | None = None


class Confirmation:
    """Tells whether a report reached the broker on the connection that carried the
    delivery it is about (ok False: that connection is gone): to a thread that waits, or,
    with `then`, by calling it with the result (on the broker thread)."""

    def __init__(self, then: Callable[[bool], None] | None = None) -> None:
        self.ok = False
        self._then = then
        self._settled = Latch()

    @property
    def settled(self) -> bool:
        """Whether the result is known."""
        return self._settled.is_set()

    def settle(self, ok: bool) -> None:
        """Record the result and wake the waiter (a second settle changes nothing)."""
        if not self._settled.is_set():
            self.ok = ok
            self._settled.set()
            if self._then is not None:
                self._then(ok)

    def wait(self, timeout: float) -> bool:
        """True when the report was confirmed in time on the delivery's connection."""
        return self._settled.wait(timeout) and self.ok


@dataclass(frozen=True)
class Report:
    """A message for the status queue; with `confirm`, the sender waits for the broker's
    confirm, and the report is dropped if connection `generation` is gone."""

    message: StatusQueueMessage
    confirm: Confirmation | None = None
    generation: int | None = None


@dataclass(frozen=True)
class Settle:
    """Acknowledge (or reject) a delivery of connection `generation`."""

    tag: int
    generation: int
    ack: bool = True
    requeue: bool = False


Action = Publish | Report | Settle


class Outbox:
    """A thread-safe FIFO of actions that wakes its consumer when work arrives."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Action] = queue.SimpleQueue()
        self._waker: Callable[[], None] = _nothing
        self._signalled = False  # a wake is on its way and no take() has run since

    def set_waker(self, waker: Callable[[], None]) -> None:
        """Call `waker` (from any thread) when actions arrive while the consumer may wait."""
        self._waker = waker

    def put(self, *actions: Action) -> None:
        """Queue actions, in order, and wake the consumer (once until its next take)."""
        if not actions:
            return
        for action in actions:
            self._queue.put(action)
        self.nudge()

    def nudge(self) -> None:
        """Wake the consumer, with or without new actions (once until its next take)."""
        if not self._signalled:
            self._signalled = True
            self._waker()

    def take(self, limit: int) -> list[Action]:
        """Up to `limit` queued actions, without waiting."""
        self._signalled = False
        taken: list[Action] = []
        while len(taken) < limit:
            try:
                taken.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return taken

    def empty(self) -> bool:
        """True when nothing is queued."""
        return self._queue.empty()


def _nothing() -> None:
    """The waker until one is set."""
