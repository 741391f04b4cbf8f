"""What a dead letter says (pure): its kind, reason and runs, in values PostgreSQL can hold.

A message reaches the dead-letter queue three ways: a worker or scheduler publishes a run
that is out of attempts (header ``x-zeitplan-reason``), a component sets aside a message it
cannot apply (``x-zeitplan-reason`` and ``x-zeitplan-kind``, e.g. ``status``), or RabbitMQ
dead-letters it from a queue (``x-death``: ``delivery_limit`` after too many deliveries,
``rejected`` when a consumer refused it). Any body is accepted, unparsable bytes included:
reading one never raises.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from common import broker as topo
from common.broker import Delivery
from common.errors import MessageError
from common.messages import RunMessage, decode_batch, encode
from common.states import FINAL, RunState

REASON_HEADER = "x-zeitplan-reason"
KIND_HEADER = "x-zeitplan-kind"
_TEXT_LIMIT = 2000  # characters kept of a header's text (reasons are one line)


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter table: a message, or one run of a pack."""

    digest: bytes  # identifies the letter: recorded once however often it is seen
    kind: str  # run, status, or unknown (or what the publisher's kind header says)
    reason: str
    body: bytes
    headers: dict[str, Any]  # JSON-safe copy of the message headers
    run_id: int | None = None
    job_id: int | None = None
    attempt: int | None = None
    # RabbitMQ dead-lettered it (x-death) rather than a component publishing it: when it
    # is a run message, nothing else will run that attempt (see `ends_run`).
    by_broker: bool = False
    queue: str | None = None  # the queue RabbitMQ dead-lettered it from


def read(delivery: Delivery) -> list[DeadLetter]:
    """The records for one delivery from the dead-letter queue: one per run of a run message
    or pack, one for anything else."""
    headers = jsonable(delivery.headers)
    assert isinstance(headers, dict)
    death = _last_death(delivery.headers)
    queue = _text(death.get("queue")) if death else None
    published_reason = _text(delivery.headers.get(REASON_HEADER))
    reason = published_reason or (_text(death.get("reason")) if death else None) or "unknown"
    try:
        messages = decode_batch(delivery.body)
    except MessageError:
        messages = []
    kind = (_text(delivery.headers.get(KIND_HEADER))
            or _kind_of_queue(queue) or (messages[0].type if messages else "unknown"))
    by_broker = death is not None and published_reason is None
    material = _material(delivery, headers)
    runs = [m for m in messages if isinstance(m, RunMessage)] if kind == "run" else []
    if runs:
        return [DeadLetter(
            digest=_digest(material, index), kind=kind, reason=reason,
            body=delivery.body if len(runs) == 1 else encode(run), headers=headers,
            run_id=run.run_id, job_id=run.job_id, attempt=run.attempt, by_broker=by_broker,
            queue=queue) for index, run in enumerate(runs)]
    run_ids = [getattr(m, "run_id", None) for m in messages]
    return [DeadLetter(digest=_digest(material, 0), kind=kind, reason=reason,
                       body=delivery.body, headers=headers,
                       run_id=run_ids[0] if run_ids else None, by_broker=by_broker,
                       queue=queue)]


def unreadable(delivery: Delivery) -> DeadLetter:
    """The bare record of a delivery `read` failed on: its body, nothing parsed."""
    material = hashlib.sha256(f"{delivery.message_id}".encode() + delivery.body).digest()
    return DeadLetter(digest=_digest(material, 0), kind="unknown", reason="unreadable",
                      body=delivery.body, headers={})


def ends_run(letter: DeadLetter, state: str, attempt: int) -> bool:
    """Whether RabbitMQ's dead-lettering of `letter` leaves its run (now at `attempt` in
    `state`) with nothing to move it on, so that the run must end ``dead``: the attempt in
    the message never started (the run is ``queued`` for it, or it is the next attempt), or
    it failed and its retry was never confirmed (``failed``, ``timed_out``: a redelivery
    would have sent the next attempt; a poison message gets none). A ``running`` attempt is
    left to the lost-attempt recovery (its worker may live on behind a broken connection),
    a ``retrying`` one to its retry message, and a final run stays as it is."""
    if not letter.by_broker or letter.kind != "run" or letter.attempt is None:
        return False
    if RunState(state) in FINAL:
        return False
    return letter.attempt > attempt or (
        letter.attempt == attempt and state in ("queued", "failed", "timed_out"))


def run_reason(letter: DeadLetter) -> str:
    """The reason a run ended by its dead letter is given."""
    source = f" from {letter.queue}" if letter.queue else ""
    return f"dead-lettered by RabbitMQ{source}: {letter.reason}"


def jsonable(value: Any) -> Any:
    """`value` (an AMQP header value as pika decodes it) as JSON PostgreSQL accepts: text
    without NUL characters, bytes as text, times as ISO 8601, no NaN or infinity."""
    if isinstance(value, dict):
        return {_clean(str(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal | datetime):
        return str(value) if isinstance(value, Decimal) else value.isoformat()
    if isinstance(value, bytes | bytearray):
        return _clean(bytes(value).decode("utf-8", "replace"))
    return _clean(str(value))


def _clean(text: str) -> str:
    """PostgreSQL text cannot hold a NUL character."""
    return text.replace("\x00", "\ufffd")


def _text(value: Any) -> str | None:
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    if not isinstance(value, str) or not value:
        return None
    return _clean(value[:_TEXT_LIMIT])


def _last_death(headers: dict[str, Any]) -> dict[str, Any] | None:
    """The latest death RabbitMQ recorded (x-death lists the latest first)."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return deaths[0]
    return None


def _kind_of_queue(queue: str | None) -> str | None:
    if queue == topo.STATUS:
        return "status"
    if queue is not None and queue.startswith(f"{topo.RUNS}."):
        return "run"
    return None


def _material(delivery: Delivery, headers: dict[str, Any]) -> bytes:
    """What identifies a message: its id, body and headers, but not x-delivery-count,
    which counts this queue's deliveries of it (another one after a lost ack)."""
    stable = {k: v for k, v in headers.items() if k != "x-delivery-count"}
    meta = json.dumps([delivery.message_id, stable], sort_keys=True).encode()
    return hashlib.sha256(meta).digest() + hashlib.sha256(delivery.body).digest()


def _digest(material: bytes, index: int) -> bytes:
    return hashlib.sha256(material + index.to_bytes(4, "big")).digest()
