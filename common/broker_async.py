"""The asynchronous RabbitMQ adapter: a pika SelectConnection served by the thread that
calls :meth:`AsyncBroker.run`, with windowed publisher confirms.

pika's BlockingConnection waits for each publish's confirm before the next; here a publish
returns at once and its ``on_confirm(ok)`` runs on the I/O thread when the broker confirms
it (ok) or refuses or returns it as unroutable (not ok). Publishes still unconfirmed when the
connection closes get no callback: the caller knows what it sent and sends it again. Other
threads reach the loop only through :meth:`AsyncBroker.call_threadsafe`.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Sequence
from typing import Any

import pika
import pika.exceptions
import pika.spec
from pika.adapters.select_connection import SelectConnection

from common.broker import CONTROL, Channel, Delivery, connection_parameters, describe
from common.errors import BrokerError

Confirm = Callable[[bool], None]
CLOSE_WAIT = 2.0  # seconds to finish a close handshake after a callback raised


def reset_while_opening(exc: ValueError) -> bool:
    """True for the error pika 1.3 raises out of the I/O loop, instead of reporting an open
    error, when a TCP connection is reset between its connect and its first use (a node or
    proxy that accepts and drops at once): a failure of that node, not a bug."""
    return str(exc).startswith("Expected connected socket")


class AsyncBroker(Channel):
    """One AMQP connection with one confirm-mode channel, used from its I/O thread only."""

    def __init__(self, urls: Sequence[str], *, heartbeat: int = 10,
                 name: str = "zeitplan") -> None:
        self._params = connection_parameters(urls, heartbeat=heartbeat, name=name)
        self._conn: SelectConnection | None = None
        self._channel: Any = None
        self._on_ready: Callable[[], None] = _nothing
        self._failure: str | None = None
        self._stopping = False
        self._ready_seen = False  # the channel opened on this run's connection
        self._tag = 0  # the channel's last publish sequence number
        self._pending: dict[int, tuple[str, Confirm]] = {}  # tag -> (message id, callback)
        self._returned: set[str] = set()  # message ids returned unroutable, not yet confirmed

    @property
    def connected(self) -> bool:
        """True while the channel is open in confirm mode."""
        return bool(self._channel is not None and self._channel.is_open)

    # -- lifecycle (the I/O thread) ------------------------------------------------------
    def run(self, on_ready: Callable[[], None], tick: Callable[[], None],
            every: float) -> None:
        """Connect to the first node that answers (nodes in a random order), call
        `on_ready` once the channel is open, and serve the I/O loop, calling `tick` every
        `every` seconds, until the connection closes. Returns after :meth:`stop`; raises
        BrokerError when it cannot connect or the connection fails."""
        self._on_ready, self._stopping = on_ready, False
        self._ready_seen = False
        params = list(self._params)
        random.shuffle(params)
        for param in params:
            self._failure = None  # this node's, not a node tried before
            conn = SelectConnection(param, on_open_callback=self._on_open,
                                    on_open_error_callback=self._on_open_error,
                                    on_close_callback=self._on_closed)
            self._conn = conn
            self._every(conn, tick, every)
            try:
                conn.ioloop.start()
            except ValueError as exc:
                self._abort(conn)
                if not reset_while_opening(exc):
                    raise
                self._failure = "the connection was reset while it opened"
            except BaseException:
                self._abort(conn)
                raise
            finally:
                self._channel = None
                self._pending.clear()
                self._returned.clear()
            if self._ready_seen or self._stopping:
                break  # it had connected, then closed: the caller reconnects
        self._conn = None
        if not self._stopping:
            verb = "lost the connection to" if self._ready_seen else "cannot connect to"
            raise BrokerError(f"{verb} RabbitMQ: {self._failure or 'closed'}")

    def stop(self) -> None:
        """Close the connection (from the I/O thread): :meth:`run` then returns."""
        self._stopping = True
        self._close("stopping")

    def fail(self, why: str) -> None:
        """Close the connection as broken (from the I/O thread): :meth:`run` then raises
        BrokerError saying `why`."""
        self._close(why)

    def call_threadsafe(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the I/O thread soon; any thread, never raises (while disconnected
        there is no loop, and `fn` is dropped)."""
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):  # closed meanwhile
                conn.ioloop.add_callback_threadsafe(fn)

    # -- consuming (topology, prefetch, consume, ack and reject: Channel's) ----------------
    def consume_control(self, on_delivery: Callable[[Delivery], None]) -> None:
        """Consume an exclusive queue of this connection bound to the control fanout."""
        def declared(frame: Any) -> None:
            name = str(frame.method.queue)
            self._ch().queue_bind(name, CONTROL)
            self.consume(name, on_delivery)
        with self._errors("declare the control queue"):
            self._ch().queue_declare("", exclusive=True, auto_delete=True, callback=declared)

    def cancel_consumers(self) -> None:
        """Stop receiving new deliveries (unacked ones stay with us until settled)."""
        with self._errors("cancel the consumers"):
            for tag in list(self._ch().consumer_tags):
                self._ch().basic_cancel(tag)

    # -- publishing and settling ---------------------------------------------------------
    def publish(self, exchange: str, routing_key: str, body: bytes, on_confirm: Confirm, *,
                message_id: str | None = None, headers: dict[str, Any] | None = None) -> None:
        """Publish one persistent, mandatory message; `on_confirm(ok)` follows."""
        message_id = message_id or f"zp-{self._tag + 1}"  # to match a return to its publish
        props = pika.BasicProperties(delivery_mode=2, content_type="application/json",
                                     message_id=message_id, headers=headers or None)
        with self._errors(f"publish to {exchange or 'the default exchange'}"):
            self._ch().basic_publish(exchange, routing_key, body, props, mandatory=True)
        self._tag += 1
        self._pending[self._tag] = (message_id, on_confirm)

    # -- pika's callbacks ----------------------------------------------------------------
    def _every(self, conn: SelectConnection, tick: Callable[[], None], every: float) -> None:
        loop = conn.ioloop

        def fire() -> None:
            if not conn.is_closed and self._conn is conn:
                tick()
                loop.call_later(every, fire)
        loop.call_later(every, fire)

    def _on_open(self, conn: SelectConnection) -> None:
        conn.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel: Any) -> None:
        self._tag = 0  # publish sequence numbers count from 1 on every channel
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(ack_nack_callback=self._on_confirm,
                                 callback=lambda _frame: self._ready())

    def _ready(self) -> None:
        self._ready_seen = True
        self._on_ready()

    def _on_channel_closed(self, _channel: Any, reason: BaseException) -> None:
        self._channel = None
        self._close(f"channel closed: {describe(reason)}")

    def _on_open_error(self, conn: SelectConnection, error: BaseException | str) -> None:
        self._failure = error if isinstance(error, str) else describe(error)
        conn.ioloop.stop()

    def _on_closed(self, conn: SelectConnection, reason: BaseException) -> None:
        self._channel = None
        self._failure = self._failure or describe(reason)
        conn.ioloop.stop()

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        ok = isinstance(method, pika.spec.Basic.Ack)
        if method.multiple:
            done = []
            while self._pending and next(iter(self._pending)) <= method.delivery_tag:
                done.append(self._pending.pop(next(iter(self._pending))))
        else:
            entry = self._pending.pop(method.delivery_tag, None)
            done = [entry] if entry else []
        for message_id, on_confirm in done:
            returned = message_id in self._returned
            self._returned.discard(message_id)
            on_confirm(ok and not returned)

    def _on_return(self, _channel: Any, _method: Any, props: Any, _body: bytes) -> None:
        self._returned.add(props.message_id or "")

    # -- internals -----------------------------------------------------------------------
    def _close(self, why: str) -> None:
        conn = self._conn
        self._failure = self._failure or why
        if conn is not None and conn.is_open:
            conn.close()
        elif conn is not None and not conn.is_closing:
            conn.ioloop.stop()

    def _abort(self, conn: SelectConnection) -> None:
        """A callback raised out of the loop: finish closing, so RabbitMQ hands this
        connection's deliveries to other consumers now rather than after heartbeats."""
        with contextlib.suppress(Exception):
            if conn.is_open:
                conn.close()
                conn.ioloop.call_later(CLOSE_WAIT, conn.ioloop.stop)
                conn.ioloop.start()

def _nothing() -> None:
    """The ready callback until one is given."""
