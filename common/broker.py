"""RabbitMQ adapter, blocking: topology, names, and :class:`Broker`.

One :class:`Broker` per thread (pika connections are not thread-safe). Publishes wait for
the broker's confirm. pika's exceptions become :class:`common.errors.BrokerError` here and
in the other two adapters that import pika: common.broker_batch (batches with windowed
confirms, the leader's) and common.broker_async (a connection served on its own thread's
I/O loop, the worker's).

Topology (declared idempotently by every daemon at start):

* ``zeitplan.runs`` (direct) → quorum queues ``zeitplan.runs.<pool>.<level>``, one per
  worker pool and priority level (quorum queues have no message priorities);
* ``zeitplan.retry`` (headers) → quorum queues ``zeitplan.retry.<N>s`` with a message TTL
  of N seconds that dead-letter back to ``zeitplan.runs`` with the original routing key;
* ``zeitplan.dead`` (fanout) → quorum queue ``zeitplan.dead-letters``: runs out of attempts
  and messages that cannot be parsed (run and status queues dead-letter here), consumed
  into PostgreSQL by one scheduler at a time; bounded by `dead_letter_arguments`;
* ``zeitplan.status`` (direct) → quorum queue ``zeitplan.status``, consumed by one
  scheduler at a time (single active consumer), in order;
* ``zeitplan.control`` (fanout) → one exclusive queue per worker, for cancellation.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from common.errors import BrokerError, Unroutable

RUNS = "zeitplan.runs"
RETRY = "zeitplan.retry"
DEAD = "zeitplan.dead"
STATUS = "zeitplan.status"
CONTROL = "zeitplan.control"
LEVELS = ("high", "normal", "low")
RETRY_TIERS = (1, 2, 5, 10, 30, 60, 300, 1800)
# A message that keeps killing its consumer is dead-lettered after this many deliveries.
DELIVERY_LIMIT = 20
# The dead-letter queue. Not named like its exchange, as the unbounded queue of earlier
# versions was: RabbitMQ refuses a declaration whose arguments differ from an existing
# queue's (PRECONDITION_FAILED), so the bound comes with a new queue, and the schedulers'
# dead-letter consumer unbinds and drains the old one (LEGACY_DEAD_QUEUE).
DEAD_LETTERS = "zeitplan.dead-letters"
LEGACY_DEAD_QUEUE = DEAD
DEAD_LETTER_LIMIT = 100_000  # messages
DEAD_LETTER_BYTES = 1024 ** 3  # bytes of bodies


def dead_letter_arguments(limit: int = DEAD_LETTER_LIMIT,
                          max_bytes: int = DEAD_LETTER_BYTES) -> dict[str, Any]:
    """Arguments of the dead-letter queue: bounded, and when full it refuses new letters
    (their publishers retry: nothing unrecorded is dropped, as drop-head would do) rather
    than drop the oldest; one consumer at a time."""
    return {"x-queue-type": "quorum", "x-max-length": limit, "x-max-length-bytes": max_bytes,
            "x-overflow": "reject-publish", "x-single-active-consumer": True}


def level_of(priority: int) -> str:
    """The priority level (queue) for a job priority 0-9 (9 is the most urgent)."""
    return "high" if priority >= 7 else "normal" if priority >= 4 else "low"


def run_queue(pool: str, level: str) -> str:
    """Name of the run queue of one pool and priority level."""
    return f"{RUNS}.{pool}.{level}"


def run_routing_key(pool: str, priority: int) -> str:
    """Routing key on the run exchange for a run of this pool and priority."""
    return f"{pool}.{level_of(priority)}"


def retry_tier(delay: float) -> int:
    """The largest retry tier not longer than `delay` seconds (at least the shortest)."""
    fitting = [tier for tier in RETRY_TIERS if tier <= delay]
    return fitting[-1] if fitting else RETRY_TIERS[0]


def connection_parameters(urls: Sequence[str], *, heartbeat: int, name: str,
                          attempts: int = 1) -> list[pika.URLParameters]:
    """pika parameters for each node URL (tried in order by a connection)."""
    out = []
    for url in urls:
        params = pika.URLParameters(url)
        params.heartbeat = heartbeat
        params.blocked_connection_timeout = 30
        params.connection_attempts = attempts
        params.socket_timeout = 5
        params.client_properties = {"connection_name": name}
        out.append(params)
    return out


def describe(exc: BaseException) -> str:
    """A one-line description of a pika exception."""
    return _describe(exc)


def declare_topology(ch: Any, pools: Iterable[str]) -> None:
    """Declare every exchange and durable queue on channel `ch`, blocking or asynchronous
    (pika sends an asynchronous channel's declarations one after the other); safe to
    repeat."""
    quorum = {"x-queue-type": "quorum"}
    for exchange, kind in ((RUNS, "direct"), (RETRY, "headers"), (DEAD, "fanout"),
                           (STATUS, "direct"), (CONTROL, "fanout")):
        ch.exchange_declare(exchange, exchange_type=kind, durable=True)
    ch.queue_declare(DEAD_LETTERS, durable=True, arguments=dead_letter_arguments())
    ch.queue_bind(DEAD_LETTERS, DEAD)
    # One consumer at a time (the others stand by): events are applied in the order
    # they were published, so a redelivery report never overtakes the `running`
    # report published before it.
    ch.queue_declare(STATUS, durable=True, arguments={
        **quorum, "x-dead-letter-exchange": DEAD, "x-single-active-consumer": True})
    ch.queue_bind(STATUS, STATUS, routing_key=STATUS)
    for pool in pools:
        for level in LEVELS:
            queue = run_queue(pool, level)
            ch.queue_declare(queue, durable=True, arguments={
                **quorum, "x-dead-letter-exchange": DEAD,
                "x-delivery-limit": DELIVERY_LIMIT})
            ch.queue_bind(queue, RUNS, routing_key=f"{pool}.{level}")
    for tier in RETRY_TIERS:
        queue = f"{RETRY}.{tier}s"
        ch.queue_declare(queue, durable=True, arguments={
            **quorum, "x-message-ttl": tier * 1000, "x-dead-letter-exchange": RUNS,
            "x-overflow": "reject-publish",
            "x-dead-letter-strategy": "at-least-once"})
        ch.queue_bind(queue, RETRY, arguments={"x-match": "all", "tier": str(tier)})


@dataclass(frozen=True)
class Delivery:
    """One message received from a queue."""

    tag: int
    body: bytes
    queue: str
    routing_key: str
    redelivered: bool
    delivery_count: int
    headers: dict[str, Any]
    message_id: str | None

    @classmethod
    def of(cls, queue: str, method: Any, props: Any, body: bytes) -> Delivery:
        """The delivery pika handed over as (method, properties, body)."""
        headers = dict(props.headers or {})
        return cls(tag=method.delivery_tag, body=body, queue=queue,
                   routing_key=method.routing_key, redelivered=bool(method.redelivered),
                   delivery_count=int(headers.get("x-delivery-count", 0) or 0),
                   headers=headers, message_id=props.message_id)


class Channel:
    """What both adapters do alike on their channel: :class:`Broker` (blocking) and
    common.broker_async.AsyncBroker (a SelectConnection's channel, whose requests pika sends
    one after the other)."""

    def declare_topology(self, pools: Iterable[str]) -> None:
        """Declare every exchange and durable queue; safe to repeat."""
        with self._errors("declare the topology"):
            declare_topology(self._ch(), pools)

    def set_prefetch(self, count: int) -> None:
        """At most `count` unacknowledged deliveries on this channel."""
        with self._errors("set the prefetch"):
            self._ch().basic_qos(prefetch_count=count)

    def consume(self, queue: str, on_delivery: Callable[[Delivery], None]) -> None:
        """Consume `queue` with manual acks."""
        def callback(_ch: Any, method: Any, props: Any, body: bytes) -> None:
            on_delivery(Delivery.of(queue, method, props, body))
        with self._errors(f"consume {queue}"):
            self._ch().basic_consume(queue, callback, auto_ack=False)

    def ack(self, tag: int, *, multiple: bool = False) -> None:
        """Acknowledge a delivery (and, with `multiple`, every earlier one)."""
        with self._errors("ack"):
            self._ch().basic_ack(tag, multiple=multiple)

    def reject(self, tag: int, *, requeue: bool) -> None:
        """Reject a delivery: requeue it, or dead-letter it."""
        with self._errors("reject"):
            self._ch().basic_reject(tag, requeue=requeue)

    _channel: Any = None

    def _ch(self) -> Any:
        if self._channel is None or not self._channel.is_open:
            raise BrokerError("not connected to RabbitMQ")
        return self._channel

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn pika's exceptions into BrokerError."""
        try:
            yield
        except BrokerError:
            raise
        except (pika.exceptions.AMQPError, OSError, AssertionError) as exc:
            self._failed(exc)
            error = Unroutable if isinstance(exc, pika.exceptions.UnroutableError) \
                else BrokerError
            raise error(f"cannot {doing}: {_describe(exc)}") from exc

    def _failed(self, exc: BaseException) -> None:
        """Called with the exception behind a BrokerError."""


class Broker(Channel):
    """One AMQP connection and channel, owned by the thread that made it."""

    def __init__(self, urls: Sequence[str], *, heartbeat: int = 10, name: str = "zeitplan",
                 connect_attempts: int = 1) -> None:
        self._params = connection_parameters(urls, heartbeat=heartbeat, name=name,
                                             attempts=connect_attempts)
        self._conn: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def connect(self) -> None:
        """Connect to the first node that answers (nodes tried in a random order)."""
        params = list(self._params)
        random.shuffle(params)
        try:
            self._conn = pika.BlockingConnection(params)
            self._channel = self._conn.channel()
            self._channel.confirm_delivery()
        except pika.exceptions.AMQPError as exc:
            self._conn = self._channel = None
            raise BrokerError(f"cannot connect to RabbitMQ: {_describe(exc)}") from exc

    @property
    def connected(self) -> bool:
        """True while the connection and channel are open."""
        return bool(self._conn and self._conn.is_open and self._channel
                    and self._channel.is_open)

    def close(self) -> None:
        """Close the connection; never raises."""
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None and conn.is_open:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                conn.close()

    def declare_queue(self, name: str) -> None:
        """Declare a durable quorum queue of that name (tools and tests)."""
        with self._errors(f"declare {name}"):
            self._ch().queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})

    def unbind(self, queue: str, exchange: str) -> None:
        """Remove the binding of `queue` to `exchange` (none there: nothing happens)."""
        with self._errors(f"unbind {queue}"):
            self._ch().queue_unbind(queue, exchange)

    def queue_exists(self, name: str) -> bool:
        """Whether queue `name` exists. Asked on a channel of its own, as the broker closes
        the channel that asked about a missing queue."""
        with self._errors(f"look for {name}"):
            assert self._conn is not None, "not connected"
            side = self._conn.channel()
            try:
                side.queue_declare(name, passive=True)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code != 404:  # NOT_FOUND
                    raise
                return False
            side.close()
            return True

    # -- publishing --------------------------------------------------------------------
    def publish(self, exchange: str, routing_key: str, body: bytes, *,
                message_id: str | None = None, headers: dict[str, Any] | None = None) -> None:
        """Publish one persistent message and wait for the broker's confirm."""
        props = pika.BasicProperties(delivery_mode=2, content_type="application/json",
                                     message_id=message_id, headers=headers or None)
        with self._errors(f"publish to {exchange or 'the default exchange'}"):
            self._ch().basic_publish(exchange, routing_key, body, props, mandatory=True)

    def get(self, queue: str) -> Delivery | None:
        """Fetch one message from `queue` without a consumer (tests and tools)."""
        with self._errors(f"get from {queue}"):
            method, props, body = self._ch().basic_get(queue, auto_ack=False)
            if method is None:
                return None
            return Delivery.of(queue, method, props, body)

    def process(self, time_limit: float) -> None:
        """Run pika's I/O loop for up to `time_limit` seconds, invoking callbacks."""
        with self._errors("process broker events"):
            assert self._conn is not None
            self._conn.process_data_events(time_limit=time_limit)

    def purge(self, queue: str) -> int:
        """Drop every message of `queue` (tests and tools); returns how many."""
        with self._errors(f"purge {queue}"):
            return int(self._ch().queue_purge(queue).method.message_count)

    def message_count(self, queue: str) -> int:
        """Ready messages in `queue` (not counting unacknowledged ones)."""
        with self._errors(f"inspect {queue}"):
            return int(self._ch().queue_declare(queue, passive=True).method.message_count)

    # -- internals ---------------------------------------------------------------------
    def _failed(self, exc: BaseException) -> None:
        """Close a broken connection (a refused or unroutable message leaves it sound)."""
        if not isinstance(exc, pika.exceptions.UnroutableError | pika.exceptions.NackError):
            self.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, pika.exceptions.UnroutableError):
        return "message unroutable (no queue bound for it)"
    if isinstance(exc, pika.exceptions.NackError):
        return "message refused by the broker (nack)"
    text = str(exc) or repr(exc)
    return text.splitlines()[0][:300]

