"""The worker's start deadline binds a run's first start, not its retries."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from common.broker import Delivery
from common.messages import RunMessage, StatusMessage, decode, encode
from common.states import RunState
from tests.unit.test_executor_hold import delivery
from tests.unit.test_executor_plain import Rig
from workerd.attempt import start_deadline_missed

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def message(attempt: int, deadline: datetime | None) -> RunMessage:
    found = decode(delivery(1, not_before=None, attempt=attempt).body)
    assert isinstance(found, RunMessage)
    return replace(found, start_deadline=deadline)


@pytest.mark.parametrize(("attempt", "deadline", "missed"), [
    (1, NOW - timedelta(seconds=1), True),
    (1, NOW, False),                          # at the deadline it may still start
    (1, NOW + timedelta(seconds=1), False),
    (1, None, False),
    (2, NOW - timedelta(hours=1), False),     # a retry: the deadline was the first start's
    (5, NOW - timedelta(seconds=1), False),
])
def test_only_a_first_attempt_can_miss_its_start_deadline(
        attempt: int, deadline: datetime | None, missed: bool) -> None:
    assert start_deadline_missed(message(attempt, deadline), NOW) is missed


def late(run_id: int, attempt: int) -> Delivery:
    plain = delivery(run_id, not_before=None, attempt=attempt)
    body = decode(plain.body)
    assert isinstance(body, RunMessage)
    past = datetime.now(UTC) - timedelta(minutes=5)
    return replace(plain, body=encode(replace(body, start_deadline=past)))


def test_a_retry_past_the_first_starts_deadline_still_executes() -> None:
    # A retry message from a worker or leader that still carries the first attempt's
    # deadline: the retry runs when its backoff brings it back.
    rig = Rig(slots=1)
    rig.ex.submit(late(41, attempt=2), generation=1)
    assert rig.reported() == [41]
    rig.confirm(41)
    rig.gate.wait_executed(1)
    rig.gate.finish.set()


def test_a_first_attempt_past_its_deadline_is_skipped_unexecuted() -> None:
    rig = Rig(slots=1)
    rig.ex.submit(late(42, attempt=1), generation=1)
    done = rig.outcomes(2)
    assert isinstance(done[0].message, StatusMessage)
    assert done[0].message.state == RunState.SKIPPED
    assert "start deadline missed" in (done[0].message.reason or "")
    assert rig.reported() == [] and rig.gate.executed == []
