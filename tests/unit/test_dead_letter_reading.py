from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from common import broker as topo
from common.broker import Delivery
from common.dead_letters import DeadLetter, ends_run, jsonable, read, run_reason, unreadable
from common.messages import RunMessage, encode, encode_pack

AT = datetime(2026, 12, 7, 22, 0, tzinfo=UTC)


def _run(run_id: int, attempt: int = 1) -> RunMessage:
    return RunMessage(run_id=run_id, job_id=7, scheduled_for=AT, attempt=attempt,
                      max_attempts=3, job_type="shell", payload={"command": "true"},
                      pool="default", priority=5, concurrency="allow", timeout_s=None,
                      backoff={"base": 1, "factor": 2, "cap": 60, "jitter": 0}, epoch=1)


def _delivery(body: bytes, headers: dict[str, Any] | None = None, tag: int = 1,
              message_id: str | None = None) -> Delivery:
    return Delivery(tag=tag, body=body, queue=topo.DEAD_LETTERS, routing_key="",
                    redelivered=False, delivery_count=0, headers=headers or {},
                    message_id=message_id)


def _death(reason: str, queue: str) -> dict[str, Any]:
    return {"count": 1, "reason": reason, "queue": queue, "time": AT, "exchange": "",
            "routing-keys": [queue]}


def test_a_run_the_broker_dead_lettered_says_why_where_and_which_attempt() -> None:
    queue = topo.run_queue("default", "normal")
    [letter] = read(_delivery(encode(_run(5, 2)), {
        "x-death": [_death("delivery_limit", queue), _death("expired", "zeitplan.retry.1s")],
        "x-first-death-reason": "expired"}))
    assert (letter.kind, letter.reason, letter.run_id, letter.job_id, letter.attempt) == (
        "run", "delivery_limit", 5, 7, 2)
    assert letter.by_broker and letter.queue == queue
    assert run_reason(letter) == f"dead-lettered by RabbitMQ from {queue}: delivery_limit"


def test_a_pack_gives_one_letter_per_run_each_with_its_own_message() -> None:
    letters = read(_delivery(encode_pack([_run(1), _run(2)]), {
        "x-death": [_death("rejected", topo.run_queue("default", "low"))]}))
    assert [d.run_id for d in letters] == [1, 2]
    assert [d.body for d in letters] == [encode(_run(1)), encode(_run(2))]
    assert len({d.digest for d in letters}) == 2


def test_a_published_letter_keeps_its_publishers_reason_and_kind_whatever_the_body() -> None:
    [letter] = read(_delivery(b"\xff\x00 not json", {
        "x-zeitplan-reason": "status event refused", "x-zeitplan-kind": "status"}))
    assert (letter.kind, letter.reason, letter.body, letter.run_id, letter.by_broker) == (
        "status", "status event refused", b"\xff\x00 not json", None, False)


def test_a_status_message_rejected_by_the_status_queue_is_a_status_letter() -> None:
    body = b'{"v": 1, "type": "status", "run_id": null}'
    [letter] = read(_delivery(body, {"x-death": [_death("rejected", topo.STATUS)]}))
    assert (letter.kind, letter.reason, letter.by_broker) == ("status", "rejected", True)


def test_a_letter_without_headers_or_a_readable_body_is_kept_as_unknown() -> None:
    [letter] = read(_delivery(b"\x00\x01"))
    assert (letter.kind, letter.reason, letter.headers) == ("unknown", "unknown", {})


def test_the_digest_ignores_the_delivery_count_but_not_the_message() -> None:
    body = encode(_run(5))
    first = read(_delivery(body, {"x-zeitplan-reason": "r", "x-delivery-count": 0}))
    again = read(_delivery(body, {"x-zeitplan-reason": "r", "x-delivery-count": 3}, tag=9))
    other = read(_delivery(body, {"x-zeitplan-reason": "r"}, message_id="5.1"))
    assert first[0].digest == again[0].digest != other[0].digest
    assert unreadable(_delivery(body)).digest != unreadable(_delivery(b"other")).digest


def test_header_values_become_json_postgresql_accepts() -> None:
    value = {"a\x00": [b"by\x00tes", AT, Decimal("1.5"), float("nan"), True, None, 3]}
    converted = jsonable(value)
    assert converted == {"a\ufffd": ["by\ufffdtes", AT.isoformat(), "1.5", "nan", True, None, 3]}
    assert "\\u0000" not in json.dumps(converted)


def _broker_letter(attempt: int) -> DeadLetter:
    return DeadLetter(digest=b"d", kind="run", reason="delivery_limit", body=b"", headers={},
                      run_id=1, job_id=1, attempt=attempt, by_broker=True)


@pytest.mark.parametrize(("state", "run_attempt", "letter_attempt", "ends"), [
    ("queued", 1, 1, True),        # the attempt never started
    ("retrying", 1, 2, True),      # its next attempt never started
    ("failed", 1, 2, True),        # the same, the retrying report still on its way
    ("timed_out", 1, 1, True),     # failed, and its retry never confirmed
    ("running", 1, 1, False),      # started: lost-attempt recovery decides
    ("retrying", 1, 1, False),     # its retry message is on its way
    ("queued", 2, 1, False),       # an older attempt's copy
    ("succeeded", 1, 1, False),    # final stays final
    ("dead", 1, 2, False),
    ("cancelled", 1, 1, False),
])
def test_only_a_broker_letter_whose_attempt_never_started_ends_its_run(
        state: str, run_attempt: int, letter_attempt: int, ends: bool) -> None:
    assert ends_run(_broker_letter(letter_attempt), state, run_attempt) is ends


def test_a_published_letter_never_ends_a_run_itself() -> None:
    published = DeadLetter(digest=b"d", kind="run", reason="failed 3 of 3 attempts", body=b"",
                           headers={}, run_id=1, job_id=1, attempt=1)
    assert not ends_run(published, "queued", 1)
