from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.errors import MessageError
from common.messages import (
    MAX_MESSAGE_BYTES,
    VERSION,
    CancelMessage,
    HeartbeatMessage,
    LogMessage,
    Message,
    RedeliveredMessage,
    RunMessage,
    StatusMessage,
    StatusQueueMessage,
    decode,
    decode_batch,
    encode,
    encode_batches,
)
from common.states import RunState

T0 = datetime(2026, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
BERLIN_SUMMER = timezone(timedelta(hours=2))

RUN = RunMessage(
    run_id=41, job_id=7, scheduled_for=T0, attempt=2, max_attempts=3, job_type="shell",
    payload={"command": "echo hi", "env": {"A": "1"}, "nested": [1, {"x": None}]},
    pool="default", priority=9, concurrency="forbid", timeout_s=12.5,
    backoff={"base": 1.0, "factor": 2.0, "cap": 600.0, "jitter": 0.1}, epoch=17,
    start_deadline=T0 + timedelta(minutes=5), dispatch=3,
    not_before=datetime(2026, 5, 1, 12, 0, 3, tzinfo=BERLIN_SUMMER))
STATUS = StatusMessage(run_id=41, attempt=2, state=RunState.FAILED, at=T0, worker="w1",
                       started_at=T0 - timedelta(seconds=3), exit_code=1, error="boom",
                       reason="exit 1")
HEARTBEAT = HeartbeatMessage(worker="w1", at=T0, runs=((41, 2), (42, 1)))
LOG = LogMessage(run_id=41, attempt=2, stream="stdout", seq=3,
                 data=b"caf\xc3\xa9 \xff\xfe\x00\x80 not utf-8")
CANCEL = CancelMessage(run_id=None, job_id=7, reason="job cancelled")
REDELIVERED = RedeliveredMessage(run_id=41, attempt=2, worker="w2", at=T0, dispatch=3)

STATUS_WIRE: dict[str, Any] = {"v": VERSION, "type": "status", "run_id": 1, "attempt": 1,
                               "state": "running", "at": "2026-05-01T10:00:00+00:00"}
RUN_WIRE = json.loads(encode(RUN))
HEARTBEAT_WIRE = json.loads(encode(HEARTBEAT))
LOG_WIRE = json.loads(encode(LOG))


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    "message",
    [RUN, STATUS, HEARTBEAT, LOG, CANCEL, REDELIVERED,
     StatusMessage(run_id=1, attempt=1, state=RunState.QUEUED, at=T0),
     HeartbeatMessage(worker="idle", at=T0, runs=()),
     HeartbeatMessage(worker="w2", at=T0, runs=((7, 1),), complete=True),
     LogMessage(run_id=1, attempt=1, stream="stderr", seq=0, data=b""),
     CancelMessage(run_id=41, job_id=None)],
    ids=lambda m: type(m).__name__,
)
def test_every_message_type_survives_an_encode_decode_round_trip(message: Message) -> None:
    decoded = decode(encode(message))
    assert decoded == message
    assert type(decoded) is type(message)


def test_round_tripped_times_keep_their_instant_and_stay_aware() -> None:
    decoded = decode(encode(RUN))
    assert isinstance(decoded, RunMessage)
    assert decoded.not_before == RUN.not_before
    assert decoded.not_before is not None and decoded.not_before.utcoffset() == timedelta(hours=2)
    assert decoded.scheduled_for.microsecond == 123456


def test_a_run_message_is_identified_by_run_and_attempt() -> None:
    assert RUN.attempt_id == "41.2"


def test_the_wire_form_is_versioned_json_with_binary_data_as_base64_text() -> None:
    wire = json.loads(encode(LOG))
    assert wire["v"] == VERSION and wire["type"] == "log"
    assert isinstance(wire["data"], str)
    assert json.loads(encode(STATUS))["state"] == "failed"


def test_a_heartbeat_without_the_complete_field_is_an_older_workers_partial_list() -> None:
    wire = json.loads(encode(HEARTBEAT))
    del wire["complete"]
    decoded = decode(body(wire))
    assert isinstance(decoded, HeartbeatMessage) and decoded.complete is False


def test_heartbeat_runs_come_back_as_a_tuple_of_pairs() -> None:
    decoded = decode(encode(HEARTBEAT))
    assert isinstance(decoded, HeartbeatMessage)
    assert decoded.runs == ((41, 2), (42, 1))
    assert isinstance(decoded.runs, tuple) and isinstance(decoded.runs[0], tuple)


@given(data=st.binary(max_size=2048), seq=st.integers(min_value=0, max_value=2**40))
def test_any_bytes_of_output_survive_the_wire(data: bytes, seq: int) -> None:
    message = LogMessage(run_id=1, attempt=1, stream="stdout", seq=seq, data=data)
    assert decode(encode(message)) == message


def test_a_batch_of_status_queue_messages_round_trips_in_order() -> None:
    batch: list[StatusQueueMessage] = [STATUS, HEARTBEAT, LOG, REDELIVERED, STATUS]
    assert [m for body in encode_batches(batch) for m in decode_batch(body)] == batch


def test_an_empty_batch_decodes_to_no_messages() -> None:
    assert encode_batches([]) == []


def test_a_batch_body_may_hold_a_single_message() -> None:
    assert decode_batch(encode(STATUS)) == [STATUS]


def test_a_batch_with_one_bad_message_is_refused_as_a_whole() -> None:
    bad = dict(STATUS_WIRE, state="exploded")
    with pytest.raises(MessageError, match="unknown state 'exploded'"):
        decode_batch(b"[" + encode(STATUS) + b"," + body(bad) + b"]")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"not json at all", "not JSON"),
        (b"", "not JSON"),
        (b'{"v": 1, "type": "status"', "not JSON"),
        (b"\x80\x81\x82\xff\xfe garbage", "not JSON"),
        (b"\xff\xfe\x00garbage\x80", "not JSON"),
        (bytes(range(256)), "not JSON"),
        (b"null", "must be a JSON object"),
        (b'"status"', "must be a JSON object"),
        (b"[1, 2]", "must be a JSON object"),
        (b'[{"v": 1}]', "must be a JSON object"),
    ],
)
def test_a_body_that_is_not_one_json_object_is_refused(raw: bytes, expected: str) -> None:
    with pytest.raises(MessageError, match=expected):
        decode(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"[1, 2]", "must be a JSON object"),
        (b'[{"v": 1, "type": "status"}, "x"]', "missing field|JSON object"),
        (b'[null]', "must be a JSON object"),
        (b"\xde\xad\xbe\xef", "not JSON"),
    ],
)
def test_a_batch_of_non_objects_is_refused(raw: bytes, expected: str) -> None:
    with pytest.raises(MessageError, match=expected):
        decode_batch(raw)


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000 + b"]" * 100_000, b'{"v": ' + b"1" * 5000 + b"}"],
    ids=["deeply-nested", "huge-integer"],
)
def test_pathological_json_is_a_message_error_not_a_crash(raw: bytes) -> None:
    assert len(raw) <= MAX_MESSAGE_BYTES
    with pytest.raises(MessageError):
        decode(raw)
    with pytest.raises(MessageError):
        decode_batch(raw)


@pytest.mark.parametrize(
    ("version", "shown"),
    [(2, "2"), (0, "0"), ("1", "'1'"), (None, "None")],
)
def test_a_message_of_another_version_is_refused(version: Any, shown: str) -> None:
    with pytest.raises(MessageError, match=f"unsupported message version {shown}"):
        decode(body(dict(STATUS_WIRE, v=version)))


def test_a_message_without_a_version_is_refused() -> None:
    wire = dict(STATUS_WIRE)
    del wire["v"]
    with pytest.raises(MessageError, match="unsupported message version None"):
        decode(body(wire))


@pytest.mark.parametrize("kind", ["bogus", "Status", 3, None])
def test_a_message_of_an_unknown_type_is_refused(kind: Any) -> None:
    with pytest.raises(MessageError, match="unknown message type"):
        decode(body(dict(STATUS_WIRE, type=kind)))


@pytest.mark.parametrize(
    ("wire", "missing", "cls"),
    [
        (STATUS_WIRE, "state", "StatusMessage"),
        (STATUS_WIRE, "at", "StatusMessage"),
        (RUN_WIRE, "payload", "RunMessage"),
        (RUN_WIRE, "epoch", "RunMessage"),
        (HEARTBEAT_WIRE, "runs", "HeartbeatMessage"),
        (LOG_WIRE, "data", "LogMessage"),
        ({"v": 1, "type": "cancel", "job_id": 1}, "run_id", "CancelMessage"),
    ],
)
def test_a_message_missing_a_required_field_names_it(
        wire: dict[str, Any], missing: str, cls: str) -> None:
    broken = {k: v for k, v in wire.items() if k != missing}
    with pytest.raises(MessageError, match=f"{cls}: missing field '{missing}'"):
        decode(body(broken))


def test_optional_fields_may_be_left_out() -> None:
    decoded = decode(body(STATUS_WIRE))
    assert decoded == StatusMessage(run_id=1, attempt=1, state=RunState.RUNNING,
                                    at=datetime(2026, 5, 1, 10, 0, tzinfo=UTC))


def test_messages_from_before_copies_were_numbered_still_decode() -> None:
    run = {k: v for k, v in json.loads(encode(RUN)).items() if k != "dispatch"}
    back = {k: v for k, v in json.loads(encode(REDELIVERED)).items() if k != "dispatch"}
    assert decode(body(run)) == replace(RUN, dispatch=0)
    assert decode(body(back)) == replace(REDELIVERED, dispatch=None)  # "the latest copy"


def cases(*rows: tuple[dict[str, Any], str, Any, str]) -> list[Any]:
    return [pytest.param(*row, id=f"{row[1]}={row[2]!r}") for row in rows]


@pytest.mark.parametrize(
    ("wire", "field", "value", "expected"),
    cases(
        (STATUS_WIRE, "run_id", "1", "StatusMessage.run_id: must be an integer"),
        (STATUS_WIRE, "attempt", 1.0, "StatusMessage.attempt: must be an integer"),
        (STATUS_WIRE, "attempt", True, "StatusMessage.attempt: must be an integer"),
        (STATUS_WIRE, "exit_code", "0", "StatusMessage.exit_code: must be an integer"),
        (STATUS_WIRE, "at", 1746093600, "StatusMessage.at: not an ISO 8601 time"),
        (STATUS_WIRE, "at", "yesterday", "StatusMessage.at: not an ISO 8601 time"),
        (STATUS_WIRE, "state", 3, "StatusMessage.state: unknown state"),
        (STATUS_WIRE, "worker", 5, "StatusMessage.worker: must be a string"),
        (STATUS_WIRE, "error", ["x"], "StatusMessage.error: must be a string"),
        (RUN_WIRE, "payload", ["echo"], "RunMessage.payload: must be an object"),
        (RUN_WIRE, "backoff", 2, "RunMessage.backoff: must be an object"),
        (RUN_WIRE, "job_type", 1, "RunMessage.job_type: must be a string"),
        (RUN_WIRE, "pool", None, "RunMessage.pool"),
        (RUN_WIRE, "timeout_s", "10", "RunMessage.timeout_s: must be a number"),
        (RUN_WIRE, "epoch", "17", "RunMessage.epoch: must be an integer"),
        (RUN_WIRE, "dispatch", "2", "RunMessage.dispatch: must be an integer"),
        (RUN_WIRE, "scheduled_for", None, "RunMessage.scheduled_for"),
        (HEARTBEAT_WIRE, "runs", [[1, 2, 3]], "HeartbeatMessage.runs: must be a list of"),
        (HEARTBEAT_WIRE, "runs", [["1", 2]], "HeartbeatMessage.runs: must be a list of"),
        (HEARTBEAT_WIRE, "runs", {"1": 2}, "HeartbeatMessage.runs: must be a list of"),
        (HEARTBEAT_WIRE, "worker", None, "HeartbeatMessage.worker"),
        (HEARTBEAT_WIRE, "complete", 1, "HeartbeatMessage.complete: must be true or false"),
        (LOG_WIRE, "data", "not base64!", "LogMessage.data: not base64"),
        (LOG_WIRE, "data", 12, "LogMessage.data: not base64"),
        (LOG_WIRE, "seq", "3", "LogMessage.seq: must be an integer"),
        (LOG_WIRE, "stream", 1, "LogMessage.stream: must be a string"),
        (STATUS_WIRE, "run_id", None, "StatusMessage.run_id"),
        (STATUS_WIRE, "at", None, "StatusMessage.at"),
        (STATUS_WIRE, "state", None, "StatusMessage.state"),
    ),
)
def test_a_field_of_the_wrong_type_is_refused_naming_it(
        wire: dict[str, Any], field: str, value: Any, expected: str) -> None:
    with pytest.raises(MessageError, match=expected):
        decode(body(dict(wire, **{field: value})))


def test_backoff_settings_must_be_numbers() -> None:
    wire = dict(RUN_WIRE, backoff={"base": "soon", "factor": 2, "cap": 60, "jitter": 0})
    with pytest.raises(MessageError, match="RunMessage.backoff"):
        decode(body(wire))


@pytest.mark.parametrize("field", ["at", "started_at"])
def test_a_time_without_an_offset_is_refused(field: str) -> None:
    with pytest.raises(MessageError, match=f"StatusMessage.{field}: time without an offset"):
        decode(body(dict(STATUS_WIRE, **{field: "2026-05-01T10:00:00"})))


def test_a_naive_time_in_a_run_message_is_refused() -> None:
    with pytest.raises(MessageError, match="RunMessage.start_deadline: time without an offset"):
        decode(body(dict(RUN_WIRE, start_deadline="2026-05-01T10:05:00")))


def test_an_unknown_state_is_refused_naming_it() -> None:
    with pytest.raises(MessageError, match="StatusMessage.state: unknown state 'exploded'"):
        decode(body(dict(STATUS_WIRE, state="exploded")))


def test_a_body_over_the_size_limit_is_refused_before_parsing() -> None:
    padding = "x" * (MAX_MESSAGE_BYTES + 1 - len(body(dict(STATUS_WIRE, error=""))))
    raw = body(dict(STATUS_WIRE, error=padding))
    assert len(raw) == MAX_MESSAGE_BYTES + 1
    with pytest.raises(MessageError, match=f"exceeds {MAX_MESSAGE_BYTES}"):
        decode(raw)
    with pytest.raises(MessageError, match="exceeds"):
        decode_batch(b"[" + raw + b"]")


def test_a_body_at_the_size_limit_is_accepted() -> None:
    padding = "x" * (MAX_MESSAGE_BYTES - len(body(dict(STATUS_WIRE, error=""))))
    raw = body(dict(STATUS_WIRE, error=padding))
    assert len(raw) == MAX_MESSAGE_BYTES
    decoded = decode(raw)
    assert isinstance(decoded, StatusMessage) and decoded.error == padding


def test_unknown_extra_fields_are_ignored_for_forward_compatibility() -> None:
    assert decode(body(dict(STATUS_WIRE, added_later=1))) == decode(body(STATUS_WIRE))


def test_status_batches_are_split_to_stay_under_the_size_limit() -> None:
    chunks = [LogMessage(1, 1, "stdout", n, b"x" * 200_000) for n in range(12)]
    bodies = encode_batches(chunks)
    assert len(bodies) > 1
    assert all(len(body) <= 1024 * 1024 + 300_000 for body in bodies)
    assert [m for body in bodies for m in decode_batch(body)] == chunks
