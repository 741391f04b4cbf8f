"""The worker's broker thread: consumes runs and control messages, performs the outbox.

pika is used from this thread only; executor threads reach it through the Outbox.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from common import broker as topo
from common.broker import Broker, Delivery
from common.daemon import UNEXPECTED
from common.errors import BrokerError, MessageError
from common.messages import CancelMessage, decode, encode_batches
from workerd.outbox import Action, Outbox, Publish, Report, Settle

log = structlog.get_logger()
BATCH = 200
IDLE_WAIT = 0.05  # seconds the I/O loop waits when neither deliveries nor actions arrive


class Transport:
    """Owns the worker's AMQP connection; reconnects with backoff."""

    def __init__(self, broker: Broker, outbox: Outbox, pools: tuple[str, ...], prefetch: int,
                 on_run: Callable[[Delivery, int], None],
                 on_cancel: Callable[[CancelMessage], None]) -> None:
        self.broker = broker
        self.outbox = outbox
        self.pools = pools
        self.prefetch = prefetch
        self.on_run = on_run
        self.on_cancel = on_cancel
        self.generation = 0
        self.consuming = False
        self.stop_consuming = False
        self.finished = False
        self.carry: list[Action] = []   # taken from the outbox, not yet performed
        self.unsettled: set[int] = set()  # run deliveries of this connection not yet settled
        outbox.set_waker(broker.wake)

    def run(self, should_exit: Callable[[], bool]) -> None:
        """Serve until `should_exit()` is true and the outbox is empty."""
        delay = 0.2
        while not (should_exit() and self.outbox.empty() and not self.carry):
            try:
                if not self.broker.connected:
                    self._connect()
                    delay = 0.2
                self.broker.process(0 if self.carry else IDLE_WAIT)
                if self.stop_consuming and self.consuming:
                    self.broker.cancel_consumers()
                    self.consuming = False
                self._perform()
            except Exception as exc:  # noqa: BLE001 - the broker thread must go on
                if isinstance(exc, BrokerError):
                    log.warning("broker_unavailable", error=str(exc), retry_in=delay)
                else:
                    log.exception(UNEXPECTED)
                self.broker.close()
                self.consuming = False
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.broker.close()
        self.finished = True

    def _connect(self) -> None:
        self.broker.connect()
        self.generation += 1
        self.unsettled.clear()
        generation = self.generation
        self.broker.declare_topology(self.pools)
        self.broker.set_prefetch(self.prefetch)
        if not self.stop_consuming:
            for pool in self.pools:
                for level in topo.LEVELS:
                    self.broker.consume(topo.run_queue(pool, level), self._receiver(generation))
            self.consuming = True
        self.broker.consume(self.broker.declare_control_queue(), self._control)
        log.info("broker_connected", generation=generation)

    def _receiver(self, generation: int) -> Callable[[Delivery], None]:
        def receive(delivery: Delivery) -> None:
            self.unsettled.add(delivery.tag)
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
        """Carry out the queued actions of one chunk: all its reports first (batched into as
        few messages as fit), then its publishes in order, then the reports that follow
        those publishes, then its settlements (one cumulative ack where it can). Each
        settlement still follows every report and publish queued before it, and a chunk
        costs one confirm wait per report message. An action leaves `carry` only once
        performed, so a broken connection loses none.
        """
        self.carry.extend(self.outbox.take(BATCH - len(self.carry)))
        self._send_reports()
        self.carry.sort(key=lambda a: isinstance(a, Settle))  # stable: publishes in order
        followups: list[Action] = []
        try:
            while self.carry and isinstance(self.carry[0], Publish):
                action = self.carry[0]
                if self._current(action.generation):
                    self.broker.publish(action.exchange, action.routing_key, action.body,
                                        message_id=action.message_id, headers=action.headers)
                    if action.then is not None:
                        followups.append(Report(action.then))
                self.carry.pop(0)
        finally:
            self.carry[0:0] = followups  # sent next, also after a broken connection
        self._send_reports()
        settles = [a for a in self.carry if isinstance(a, Settle) and self._current(a.generation)]
        self._settle(settles)
        self.carry = []

    def _send_reports(self) -> None:
        """Publish every report in `carry` (as few messages as fit), settle the ones that
        wait for their confirm, and take them out of `carry`."""
        reports = [a for a in self.carry if isinstance(a, Report)]
        if not reports:
            return
        sent = [r for r in reports if self._current(r.generation)]
        for body in encode_batches([r.message for r in sent]):
            self.broker.publish(topo.STATUS, topo.STATUS, body)
        for report in reports:
            if report.confirm is not None:
                report.confirm.settle(self._current(report.generation))
        self.carry = [a for a in self.carry if not isinstance(a, Report)]

    def _settle(self, settles: list[Settle]) -> None:
        for action in settles:
            if not action.ack:
                self.broker.reject(action.tag, requeue=action.requeue)
                self.unsettled.discard(action.tag)
        acks = {a.tag for a in settles if a.ack}
        upto, single = cumulative_ack(self.unsettled, acks)
        if upto is not None:
            self.broker.ack(upto, multiple=True)
        for tag in single:
            self.broker.ack(tag)
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
