"""Versioned JSON messages between schedulers and workers, checked on both ends.

Every message is a JSON object with ``v`` (the schema version) and ``type``. A message
that does not match its schema raises :class:`common.errors.MessageError`; the receiver
dead-letters it instead of guessing.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field
from datetime import datetime
from typing import Any

from common.errors import MessageError
from common.states import RunState

VERSION = 1
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# An exit code travels as it fits PostgreSQL's `integer` column (a plug-in may return any
# int); text without lone surrogates or NUL, which PostgreSQL refuses in text and JSON.
INT32 = (-2**31, 2**31 - 1)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class RunMessage:
    """One attempt of one run, for a worker to execute."""

    run_id: int
    job_id: int
    scheduled_for: datetime
    attempt: int
    max_attempts: int
    job_type: str
    payload: dict[str, Any]
    pool: str
    priority: int
    concurrency: str
    timeout_s: float | None
    backoff: dict[str, float]
    epoch: int
    start_deadline: datetime | None = None
    not_before: datetime | None = None
    # Which copy of the run the schedulers published (the run's dispatch number then): a
    # report that a copy came back is acted on once, and not for a copy since replaced.
    dispatch: int = 0
    type: str = field(default="run", init=False)

    @property
    def attempt_id(self) -> str:
        """The message id: one per (run, attempt)."""
        return f"{self.run_id}.{self.attempt}"


@dataclass(frozen=True)
class StatusMessage:
    """A state change of one attempt, reported by a worker (or the leader)."""

    run_id: int
    attempt: int
    state: RunState
    at: datetime
    worker: str | None = None
    started_at: datetime | None = None
    exit_code: int | None = None
    error: str | None = None
    reason: str | None = None
    type: str = field(default="status", init=False)


@dataclass(frozen=True)
class HeartbeatMessage:
    """A worker is alive and executing these (run_id, attempt) pairs.

    With `complete`, `runs` is everything it executed at `at`: an attempt of this worker
    that started before `at` and is not listed has ended, and its outcome was published
    before this message, or it was given up without one.
    """

    worker: str
    at: datetime
    runs: tuple[tuple[int, int], ...]
    complete: bool = False
    type: str = field(default="heartbeat", init=False)


@dataclass(frozen=True)
class LogMessage:
    """A chunk of a run's output."""

    run_id: int
    attempt: int
    stream: str
    seq: int
    data: bytes
    type: str = field(default="log", init=False)


@dataclass(frozen=True)
class RedeliveredMessage:
    """A worker received a run message again (its earlier consumer died or gave it back),
    or dropped it as stale (`seen_epoch`); the schedulers decide from the database whether
    that attempt had started. `dispatch` is the copy's (RunMessage.dispatch); None from a
    worker older than that field."""

    run_id: int
    attempt: int
    worker: str
    at: datetime
    dispatch: int | None = None
    # Set when the worker dropped the copy unstarted because its epoch is older than this
    # one, the newest it had seen (a deposed leader may have published it): the copy that
    # replaces it must carry this epoch at least, or it would be dropped again.
    seen_epoch: int | None = None
    type: str = field(default="redelivered", init=False)


@dataclass(frozen=True)
class CancelMessage:
    """Stop a run (or every running attempt of a job) now."""

    run_id: int | None
    job_id: int | None
    reason: str = "cancelled"
    type: str = field(default="cancel", init=False)


StatusQueueMessage = StatusMessage | HeartbeatMessage | LogMessage | RedeliveredMessage
Message = RunMessage | CancelMessage | StatusQueueMessage
_TYPES: dict[str, type[Any]] = {
    "run": RunMessage, "status": StatusMessage, "heartbeat": HeartbeatMessage,
    "log": LogMessage, "cancel": CancelMessage, "redelivered": RedeliveredMessage,
}
_DATETIMES = {"scheduled_for", "start_deadline", "not_before", "at", "started_at"}


def encode(message: Message) -> bytes:
    """The wire form of one message (fields read directly: no deep copy on the hot path).

    What PostgreSQL would refuse is made storable here, so one odd report (a plug-in's
    error text with a lone surrogate, an exit code past 32 bits) cannot stop the status
    queue: lone surrogates and NUL in text fields become U+FFFD, `exit_code` is clamped to
    the 32-bit range."""
    body: dict[str, Any] = {}
    for name in message.__dataclass_fields__:
        value = getattr(message, name)
        if isinstance(value, str):
            if not value.isascii() or "\x00" in value:  # isascii() is a flag: O(1)
                value = _UNSTORABLE.sub("\ufffd", value)
        elif name == "exit_code" and value is not None:
            value = min(max(value, INT32[0]), INT32[1])
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, bytes):
            value = base64.b64encode(value).decode("ascii")
        elif isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        body[name] = value
    body["v"] = VERSION
    return json.dumps(body, separators=(",", ":")).encode()


def encode_pack(messages: Sequence[RunMessage]) -> bytes:
    """Run messages as one body: a JSON list (a single run is sent as its object)."""
    if len(messages) == 1:
        return encode(messages[0])
    return b"[" + b",".join(encode(m) for m in messages) + b"]"


def encode_batches(messages: list[StatusQueueMessage], limit: int = 1024 * 1024
                   ) -> list[bytes]:
    """Status-queue messages as JSON-list bodies of at most about `limit` bytes each (a
    single larger message gets a body of its own)."""
    bodies: list[list[bytes]] = []
    size = limit
    for body in (encode(m) for m in messages):
        if size + len(body) > limit:
            bodies.append([])
            size = 0
        bodies[-1].append(body)
        size += len(body) + 1
    return [b"[" + b",".join(group) + b"]" for group in bodies]


def decode(body: bytes) -> Message:
    """Parse and check one message; MessageError says what is wrong."""
    return _decode_obj(_load(body))


def decode_batch(body: bytes) -> list[Message]:
    """Parse a body holding one message or a JSON list of them."""
    return [_decode_obj(item) for item in load_batch(body)]


def load_batch(body: bytes) -> list[Any]:
    """The JSON objects of a body holding one message or a JSON list of them, each to be
    checked by `decode_item` (so that one bad message can be set apart from the others)."""
    data = _load(body)
    return data if isinstance(data, list) else [data]


def decode_item(item: Any) -> Message:
    """Check one JSON object of `load_batch` as a message; MessageError says what is wrong."""
    return _decode_obj(item)


def _load(body: bytes) -> Any:
    if len(body) > MAX_MESSAGE_BYTES:
        raise MessageError(f"message of {len(body)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, huge ints, deep nesting
        raise MessageError(f"not JSON: {exc}") from None


def _decode_obj(data: Any) -> Message:
    if not isinstance(data, dict):
        raise MessageError("a message must be a JSON object")
    if type(data.get("v")) is not int or data.get("v") != VERSION:
        raise MessageError(f"unsupported message version {data.get('v')!r}")
    cls = _TYPES.get(str(data.get("type")))
    if cls is None:
        raise MessageError(f"unknown message type {data.get('type')!r}")
    kwargs: dict[str, Any] = {}
    for name, spec in cls.__dataclass_fields__.items():
        if not spec.init:
            continue
        if name not in data:
            if spec.default is not MISSING or spec.default_factory is not MISSING:
                continue
            raise MessageError(f"{cls.__name__}: missing field '{name}'")
        if data[name] is None and "None" not in str(spec.type):
            raise MessageError(f"{cls.__name__}.{name}: must not be null")
        kwargs[name] = _convert(cls, name, data[name])
    try:
        return cls(**kwargs)  # type: ignore[no-any-return]
    except TypeError as exc:
        raise MessageError(f"{cls.__name__}: {exc}") from None


_INT_FIELDS = {"run_id", "job_id", "attempt", "max_attempts", "priority", "epoch", "seq",
               "exit_code", "dispatch", "seen_epoch"}


def _convert(cls: type[Any], name: str, value: Any) -> Any:
    where = f"{cls.__name__}.{name}"
    if value is None:
        return None
    if name in _DATETIMES:
        try:
            parsed = datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise MessageError(f"{where}: not an ISO 8601 time: {value!r}") from None
        if parsed.tzinfo is None:
            raise MessageError(f"{where}: time without an offset: {value!r}")
        return parsed
    if name in _INT_FIELDS:
        if not isinstance(value, int) or isinstance(value, bool):
            raise MessageError(f"{where}: must be an integer, not {value!r}")
        return value
    if name == "state":
        try:
            return RunState(value)
        except ValueError:
            raise MessageError(f"{where}: unknown state {value!r}") from None
    if name == "data":
        try:
            return base64.b64decode(value, validate=True)
        except (TypeError, ValueError):
            raise MessageError(f"{where}: not base64") from None
    if name == "runs":
        if not isinstance(value, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(i, int) for i in p)
                for p in value):
            raise MessageError(f"{where}: must be a list of [run_id, attempt] pairs")
        return tuple((p[0], p[1]) for p in value)
    if name == "complete" and not isinstance(value, bool):
        raise MessageError(f"{where}: must be true or false")
    if name in ("payload", "backoff") and not isinstance(value, dict):
        raise MessageError(f"{where}: must be an object")
    if name == "backoff" and (set(value) != {"base", "factor", "cap", "jitter"} or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value.values())):
        raise MessageError(f"{where}: must hold numbers base, factor, cap and jitter")
    if name in ("job_type", "pool", "concurrency", "worker", "error", "reason", "stream") \
            and not isinstance(value, str):
        raise MessageError(f"{where}: must be a string")
    if name == "timeout_s" and not isinstance(value, int | float):
        raise MessageError(f"{where}: must be a number")
    return value
