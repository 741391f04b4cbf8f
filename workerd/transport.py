"""The worker's broker thread: consumes runs and control messages, performs the outbox.

pika is used from this thread only (an asynchronous connection, its I/O loop served here);
executor threads reach it through the Outbox, whose waker schedules :meth:`Transport._perform`
on the loop, and the executor's `running` reports come straight from here
(:meth:`Transport.send`). The order of what is sent is the Sequencer's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from common import broker as topo
from common.broker import Delivery
from common.broker_async import AsyncBroker
from common.daemon import UNEXPECTED
from common.errors import BrokerError, MessageError
from common.messages import CancelMessage, decode
from workerd.outbox import Action, Outbox
from workerd.sequencer import Sequencer

log = structlog.get_logger()
BATCH = 500  # actions taken from the outbox at a time
TICK = 0.05  # seconds between checks for exit, stop-consuming and a missed wake


class Transport:
    """Owns the worker's AMQP connection; reconnects with backoff."""

    def __init__(self, broker: AsyncBroker, outbox: Outbox, pools: tuple[str, ...],
                 prefetch: int, on_run: Callable[[Delivery, int], None],
                 on_cancel: Callable[[CancelMessage], None],
                 on_room: Callable[[], None]) -> None:
        self.broker = broker
        self.outbox = outbox
        self.pools = pools
        self.prefetch = prefetch
        self.on_run = on_run
        self.on_cancel = on_cancel
        self.on_room = on_room  # before each hand-over: the executor takes more in hand
        self.generation = 0
        self.consuming = False
        self.stop_consuming = False
        self.finished = False
        self.carry: list[Action] = []  # from a broken connection, to perform on the next
        self.sequencer: Sequencer | None = None
        self._should_exit: Callable[[], bool] = lambda: False
        outbox.set_waker(lambda: broker.call_threadsafe(self._perform))

    def run(self, should_exit: Callable[[], bool]) -> None:
        """Serve until `should_exit()` is true and everything queued is performed."""
        self._should_exit = should_exit
        delay = 0.2
        while not self._done():
            try:
                self.broker.run(self._ready, self._tick, TICK)
            except Exception as exc:  # noqa: BLE001 - the broker thread must go on
                if isinstance(exc, BrokerError):
                    log.warning("broker_unavailable", error=str(exc), retry_in=delay)
                else:
                    log.exception(UNEXPECTED)
            if self.sequencer is not None:
                self.carry[0:0] = self.sequencer.abandon()
                self.sequencer = None
                delay = 0.2
            self.consuming = False
            if not self._done():
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.finished = True

    def _done(self) -> bool:
        return (self._should_exit() and self.outbox.empty() and not self.carry
                and (self.sequencer is None or self.sequencer.idle()))

    # -- on the I/O loop -----------------------------------------------------------------
    def _ready(self) -> None:
        self.generation += 1
        generation = self.generation
        self.sequencer = Sequencer(self.broker, generation, self.broker.fail)
        self.broker.declare_topology(self.pools)
        self.broker.set_prefetch(self.prefetch)
        if not self.stop_consuming:
            for pool in self.pools:
                for level in topo.LEVELS:
                    self.broker.consume(topo.run_queue(pool, level), self._receiver(generation))
            self.consuming = True
        self.broker.consume_control(self._control)
        log.info("broker_connected", generation=generation)
        self._perform()

    def _tick(self) -> None:
        if self.stop_consuming and self.consuming:
            self.broker.cancel_consumers()
            self.consuming = False
        self._perform()  # a wake lost while the connection changed, held work now due
        if self._done():
            self.broker.stop()

    def _receiver(self, generation: int) -> Callable[[Delivery], None]:
        def receive(delivery: Delivery) -> None:
            if self.sequencer is not None:
                self.sequencer.unsettled.add(delivery.tag)
            self.on_run(delivery, generation)
        return receive

    def _control(self, delivery: Delivery) -> None:
        try:
            message = decode(delivery.body)
            if isinstance(message, CancelMessage):
                self.on_cancel(message)
        except MessageError as exc:
            log.warning("control_message_rejected", error=str(exc))
        self.broker.ack(delivery.tag)

    def _perform(self) -> None:
        """Let the executor take work in hand, then hand its `running` reports and the
        queued actions to the sequencer together (one status publish, not two); an action
        leaves `carry` only once handed over, so a broken connection loses none."""
        sequencer = self.sequencer
        if sequencer is None or not self.broker.connected:
            return
        # Take before filling: take() re-arms the outbox's waker, so a wake that comes
        # while the executor fills schedules another pass instead of being spent on this one.
        # The fill's reports join `carry` too (`send`), kept there even if the fill raises.
        self.carry.extend(self.outbox.take(BATCH))
        self.on_room()
        chunk, self.carry = self.carry, []
        sequencer.perform(chunk)
        if not self.outbox.empty():
            self.broker.call_threadsafe(self._perform)

    def send(self, actions: list[Action]) -> None:
        """Add actions, from the broker thread, to the hand-over under way (the executor
        fills inside one); with no connection, to the next connection's first (which drops
        those bound to the old one)."""
        self.carry.extend(actions)
