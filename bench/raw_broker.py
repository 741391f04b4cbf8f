"""The RabbitMQ ceiling, without Zeitplan: publish with confirms to a quorum queue while
another process consumes it with manual acks; messages per second from the first publish
to the last ack.

The publisher is a pika SelectConnection keeping a sliding window of WINDOW unconfirmed
publishes (the broker confirms in batches, `multiple`); the consumer a SelectConnection
with prefetch PREFETCH that acks every message on its own (a BlockingConnection consumer
drains about three times slower here, so it would understate the ceiling). Each side is
its own process, so the figure is not capped by one interpreter's GIL: an honest upper
bound for what a Python publisher and consumer pair can push through one node. The
bodies are real run messages (`common.messages.encode`), persistent, as the leader
publishes them.

For comparison it also times the way `common.broker.Broker.publish` publishes: a
BlockingConnection that waits for each confirm before the next publish.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue as stdlib_queue
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import pika
import pika.channel
import pika.frame
import pika.spec

from common.messages import RunMessage, encode

QUEUE = "bench.raw"
WINDOW = 256
PREFETCH = 256
CONFIRM_EACH = 3000


def sample_body() -> bytes:
    """A run message like the leader's for a python no-op job."""
    return encode(RunMessage(
        run_id=1234567, job_id=7654321, scheduled_for=datetime.now(UTC), attempt=1,
        max_attempts=1, job_type="python", payload={"entry_point": "example.sleep_echo",
                                                    "args": {}},
        pool="default", priority=5, concurrency="allow", timeout_s=None,
        backoff={"base": 1.0, "factor": 2.0, "cap": 600.0, "jitter": 0.0}, epoch=3))


def _properties() -> pika.BasicProperties:
    return pika.BasicProperties(delivery_mode=2, content_type="application/json")


def _fresh_queue(url: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        ch.queue_delete(QUEUE)
        ch.queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    finally:
        conn.close()


def measure(url: str, count: int, progress: Callable[[str], None],
            during: AbstractContextManager[Any] | None = None) -> dict[str, Any]:
    """Round trip of `count` messages, then the confirm-each publish rate. `during` (a CPU
    window) is entered as the publisher starts and left when both sides are done."""
    body = sample_body()
    _fresh_queue(url)
    timeout = 30.0 + count / 1000.0
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    results: multiprocessing.Queue[dict[str, Any]] = ctx.Queue()
    consumer = ctx.Process(target=_consume, args=(url, count, timeout, ready, results),
                           name="bench-raw-consumer", daemon=True)
    publisher = ctx.Process(target=_publish, args=(url, count, body, timeout, results),
                            name="bench-raw-publisher", daemon=True)
    consumer.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the raw consumer did not start within 30 s")
        got: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout + 10
        with during if during is not None else contextlib.nullcontext():
            publisher.start()
            while len(got) < 2:
                try:
                    item = results.get(timeout=max(0.1, deadline - time.monotonic()))
                except stdlib_queue.Empty:
                    raise RuntimeError(f"raw broker run did not finish within {timeout:.0f} s "
                                       f"(results so far: {got})") from None
                got[item["role"]] = item
    finally:
        for proc in (publisher, consumer):
            if proc.pid is not None:
                proc.join(timeout=10)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(timeout=5)
    pub, con = got["publisher"], got["consumer"]
    for side in (pub, con):
        if side.get("error"):
            raise RuntimeError(f"raw {side['role']} failed: {side['error']}")
    seconds = con["last_at"] - pub["started_at"]
    result: dict[str, Any] = {
        "messages": count, "received": con["received"], "nacked": pub["nacked"],
        "body_bytes": len(body), "window": WINDOW, "prefetch": PREFETCH,
        "seconds": round(seconds, 3),
        "round_trip_per_s": round(con["received"] / seconds, 1) if seconds > 0 else 0.0,
        "publish_per_s": round(count / (pub["done_at"] - pub["started_at"]), 1),
        "method": (f"pika SelectConnection publisher, sliding window of {WINDOW} unconfirmed "
                   f"publishes; SelectConnection consumer, prefetch {PREFETCH}, one ack per "
                   "message; separate processes; quorum queue, persistent messages"),
    }
    progress(f"raw broker round trip: {result['round_trip_per_s']:,.0f} messages/s "
             f"({count:,} messages, publish side alone {result['publish_per_s']:,.0f}/s)")
    result["confirm_each_per_s"] = confirm_each(url, min(count, CONFIRM_EACH), body)
    progress(f"raw publish waiting for each confirm (as common.broker does): "
             f"{result['confirm_each_per_s']:,.0f} messages/s")
    return result


def confirm_each(url: str, count: int, body: bytes) -> float:
    """Publishes per second when every publish waits for its confirm (queue purged after)."""
    _fresh_queue(url)
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        props = _properties()
        began = time.monotonic()
        for _ in range(count):
            ch.basic_publish("", QUEUE, body, props, mandatory=True)
        seconds = time.monotonic() - began
        ch.queue_delete(QUEUE)
    finally:
        conn.close()
    return round(count / seconds, 1)


# -- the two processes ----------------------------------------------------------------------
def _consume(url: str, count: int, timeout: float, ready: Any,
             results: multiprocessing.Queue[dict[str, Any]]) -> None:
    consumer = _Consumer(url, count, timeout, ready)
    try:
        consumer.run()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        consumer.error = f"{type(exc).__name__}: {exc}"
    ready.set()
    if consumer.error is None and consumer.received < count:
        consumer.error = f"received {consumer.received} of {count} within {timeout:.0f} s"
    results.put({"role": "consumer", "error": consumer.error, "received": consumer.received,
                 "first_at": consumer.first_at, "last_at": consumer.last_at})


def _publish(url: str, count: int, body: bytes, timeout: float,
             results: multiprocessing.Queue[dict[str, Any]]) -> None:
    publisher = _WindowedPublisher(url, count, body, timeout)
    try:
        publisher.run()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        publisher.error = f"{type(exc).__name__}: {exc}"
    results.put({"role": "publisher", "error": publisher.error,
                 "started_at": publisher.started_at, "done_at": publisher.done_at,
                 "sent": publisher.sent, "nacked": publisher.nacked})


class _Consumer:
    """Consumes `count` messages with prefetch PREFETCH, acking each one on its own."""

    def __init__(self, url: str, count: int, timeout: float, ready: Any) -> None:
        self.url = url
        self.count = count
        self.timeout = timeout
        self.ready = ready
        self.received = 0
        self.first_at = self.last_at = 0.0
        self.error: str | None = None
        self.conn: pika.SelectConnection | None = None

    def run(self) -> None:
        self.conn = pika.SelectConnection(
            pika.URLParameters(self.url), on_open_callback=self._opened,
            on_open_error_callback=self._failed, on_close_callback=self._closed)
        self.conn.ioloop.call_later(self.timeout, self._give_up)
        self.conn.ioloop.start()

    def _opened(self, conn: pika.SelectConnection) -> None:
        conn.channel(on_open_callback=self._channel_open)

    def _failed(self, conn: pika.SelectConnection, exc: BaseException | str) -> None:
        self.error = f"cannot connect: {exc}"
        conn.ioloop.stop()

    def _closed(self, conn: pika.SelectConnection, reason: BaseException) -> None:
        if self.received < self.count and self.error is None:
            self.error = f"connection closed: {reason}"
        conn.ioloop.stop()

    def _give_up(self) -> None:
        assert self.conn is not None
        self.conn.close()

    def _channel_open(self, channel: pika.channel.Channel) -> None:
        def qos_set(_frame: pika.frame.Method) -> None:
            channel.basic_consume(QUEUE, self._on_message, auto_ack=False,
                                  callback=lambda _ok: self.ready.set())
        channel.basic_qos(prefetch_count=PREFETCH, callback=qos_set)

    def _on_message(self, channel: pika.channel.Channel, method: pika.spec.Basic.Deliver,
                    _props: pika.BasicProperties, _body: bytes) -> None:
        channel.basic_ack(method.delivery_tag)
        now = time.monotonic()
        if not self.received:
            self.first_at = now
        self.received += 1
        self.last_at = now
        if self.received >= self.count:
            assert self.conn is not None
            self.conn.close()


class _WindowedPublisher:
    """Publishes `count` messages keeping at most WINDOW of them unconfirmed."""

    def __init__(self, url: str, count: int, body: bytes, timeout: float) -> None:
        self.url = url
        self.count = count
        self.body = body
        self.timeout = timeout
        self.props = _properties()
        self.pending: deque[int] = deque()  # delivery tags awaiting their confirm
        self.sent = self.nacked = 0
        self.started_at = self.done_at = 0.0
        self.error: str | None = None
        self.conn: pika.SelectConnection | None = None
        self.channel: pika.channel.Channel | None = None

    def run(self) -> None:
        self.conn = pika.SelectConnection(
            pika.URLParameters(self.url), on_open_callback=self._opened,
            on_open_error_callback=self._failed, on_close_callback=self._closed)
        self.conn.ioloop.call_later(self.timeout, self._give_up)
        self.conn.ioloop.start()

    def _opened(self, conn: pika.SelectConnection) -> None:
        conn.channel(on_open_callback=self._channel_open)

    def _failed(self, conn: pika.SelectConnection, exc: BaseException | str) -> None:
        self.error = f"cannot connect: {exc}"
        conn.ioloop.stop()

    def _closed(self, conn: pika.SelectConnection, reason: BaseException) -> None:
        if not self.done_at and self.error is None:
            self.error = f"connection closed: {reason}"
        conn.ioloop.stop()

    def _give_up(self) -> None:
        self.error = f"sent {self.sent}, {len(self.pending)} unconfirmed after {self.timeout} s"
        assert self.conn is not None
        self.conn.close()

    def _channel_open(self, channel: pika.channel.Channel) -> None:
        self.channel = channel
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=self._ready)

    def _ready(self, _frame: pika.frame.Method) -> None:
        self.started_at = time.monotonic()
        self._fill()

    def _fill(self) -> None:
        assert self.channel is not None
        while self.sent < self.count and len(self.pending) < WINDOW:
            self.channel.basic_publish("", QUEUE, self.body, self.props)
            self.sent += 1
            self.pending.append(self.sent)  # tags count from 1 on a confirm channel

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        tag = method.delivery_tag
        if isinstance(method, pika.spec.Basic.Nack):
            self.nacked += 1
        if method.multiple:
            while self.pending and self.pending[0] <= tag:
                self.pending.popleft()
        elif self.pending and self.pending[0] == tag:
            self.pending.popleft()
        else:
            self.pending.remove(tag)
        if self.sent >= self.count and not self.pending:
            self.done_at = time.monotonic()
            assert self.conn is not None
            self.conn.close()
        else:
            self._fill()
