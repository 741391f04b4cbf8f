from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from common.errors import InvalidInput
from common.jobs import JobSpec, validate
from schedulerd.planner import materialise

NOW = datetime(2026, 5, 1, 10, 0, 7, tzinfo=UTC)
GOOD = JobSpec(name="nightly", job_type="shell", payload={"command": "echo hi"},
               schedule_kind="cron", schedule_expr="*/5 * * * *")


def refused(**changes: Any) -> str:
    with pytest.raises(InvalidInput) as caught:
        validate(replace(GOOD, **changes), now=NOW)
    return str(caught.value)


def test_a_good_spec_is_accepted_normalised_and_given_its_first_fire() -> None:
    spec, first = validate(GOOD, now=NOW)
    assert first == datetime(2026, 5, 1, 10, 5, tzinfo=UTC)
    assert spec.payload == {"command": "echo hi", "env": {}}
    assert replace(spec, payload=GOOD.payload) == GOOD


@pytest.mark.parametrize(
    ("kind", "expr", "first"),
    [
        ("cron", "0 12 * * *", datetime(2026, 5, 1, 12, 0, tzinfo=UTC)),
        ("cron", "*/10 * * * * *", datetime(2026, 5, 1, 10, 0, 10, tzinfo=UTC)),
        ("every", "every 5 minutes", NOW),
        ("now", "now", NOW),
        ("at", "2026-05-02T09:00:00+02:00", datetime(2026, 5, 2, 7, 0, tzinfo=UTC)),
    ],
)
def test_every_schedule_kind_gets_its_first_fire(kind: str, expr: str, first: datetime) -> None:
    spec, got = validate(replace(GOOD, schedule_kind=kind, schedule_expr=expr), now=NOW)
    assert got == first
    assert spec.schedule_kind == kind


def test_an_empty_kind_is_detected_from_the_expression() -> None:
    spec, _ = validate(replace(GOOD, schedule_kind="", schedule_expr="every 1 hour"), now=NOW)
    assert spec.schedule_kind == "every"


def test_a_cron_in_a_time_zone_fires_at_local_time() -> None:
    _, first = validate(replace(GOOD, schedule_expr="0 2 * * *", time_zone="Europe/Berlin"),
                        now=NOW)
    assert first == datetime(2026, 5, 2, 0, 0, tzinfo=UTC)


def test_a_past_at_time_is_accepted_with_allow_past_and_fires_now() -> None:
    past = replace(GOOD, schedule_kind="at", schedule_expr="2020-01-01T00:00:00Z",
                   allow_past=True)
    _, first = validate(past, now=NOW)
    assert first == NOW


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"job_type": "bash"}, "job type"),
        ({"concurrency": "sometimes"}, "concurrency"),
        ({"misfire": "never"}, "misfire"),
        ({"priority": 10}, "priority"),
        ({"priority": -1}, "priority"),
        ({"max_attempts": 0}, "max attempts"),
        ({"max_attempts": 101}, "max attempts"),
        ({"pool": "Bad Pool"}, "pool"),
        ({"pool": ""}, "pool"),
        ({"pool": "p" * 65}, "pool"),
        ({"timeout_s": -1.0}, "timeout"),
        ({"timeout_s": 0.0}, "timeout"),
        ({"start_deadline_s": 0.0}, "start deadline"),
        ({"misfire_grace_s": -1.0}, "misfire grace"),
        ({"jitter_s": -0.5}, "jitter"),
        ({"pause_after_failures": 0}, "pause after failures"),
        ({"backoff_factor": 0.5}, "backoff factor"),
        ({"backoff_base_s": 0.0}, "backoff base"),
        ({"backoff_cap_s": 0.5}, "backoff cap"),
        ({"backoff_jitter": 1.5}, "backoff jitter"),
        ({"dst_nonexistent": "later"}, "nonexistent"),
        ({"dst_ambiguous": "thrice"}, "ambiguous"),
        ({"schedule_kind": "weekly"}, "schedule kind"),
    ],
)
def test_a_bad_field_is_refused_naming_it(changes: dict[str, Any], field: str) -> None:
    assert field in refused(**changes)


@pytest.mark.parametrize(
    ("expr", "field"),
    [
        ("61 * * * *", "minute field"),
        ("0 24 * * *", "hour field"),
        ("0 0 32 * *", "day-of-month field"),
        ("0 0 * 13 *", "month field"),
        ("0 0 * * funday", "day-of-week field"),
        ("*/0 * * * *", "minute field"),
    ],
)
def test_a_bad_cron_expression_names_the_cron_field(expr: str, field: str) -> None:
    message = refused(schedule_expr=expr)
    assert f"cron expression {expr!r}" in message and field in message


def test_a_cron_expression_with_the_wrong_number_of_fields_says_how_many() -> None:
    assert "4 fields given" in refused(schedule_expr="* * * *")


def test_an_unknown_time_zone_is_refused_naming_it() -> None:
    assert "unknown time zone 'Mars/Olympus_Mons'" in refused(time_zone="Mars/Olympus_Mons")


@pytest.mark.parametrize("expr", ["every 0 seconds", "every 0 minutes", "PT0S"])
def test_a_zero_interval_is_refused(expr: str) -> None:
    assert "must be positive" in refused(schedule_kind="every", schedule_expr=expr)


def test_a_past_at_time_without_allow_past_is_refused() -> None:
    message = refused(schedule_kind="at", schedule_expr="2020-01-01T00:00:00Z")
    assert "in the past" in message and "allow_past" in message


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"command": ""}, "shell job: 'command' must be a non-empty string"),
        ({"cmd": "echo"}, "shell job: unknown field 'cmd'"),
        ({}, "shell job: give exactly one of 'command' and 'argv'"),
        ({"command": "x", "argv": ["x"]}, "shell job: give exactly one of"),
        ({"argv": []}, "shell job: 'argv' must be a non-empty list"),
        ({"command": "x", "env": {"A": 1}}, "shell job: 'env' must be an object of strings"),
    ],
)
def test_a_bad_shell_payload_is_refused_naming_the_field(
        payload: dict[str, Any], expected: str) -> None:
    assert expected in refused(payload=payload)


@pytest.mark.parametrize(
    "changes",
    [
        {"jitter_s": math.nan}, {"jitter_s": math.inf}, {"jitter_s": 1e15},
        {"misfire_grace_s": math.nan}, {"misfire_grace_s": math.inf},
        {"misfire_grace_s": 1e15},
    ],
    ids=lambda c: "=".join(map(str, next(iter(c.items())))),
)
def test_a_job_that_validates_can_always_be_planned(changes: dict[str, Any]) -> None:
    try:
        spec, first = validate(replace(GOOD, **changes), now=NOW)
    except InvalidInput:
        return  # refusing it is fine; accepting it and then breaking the leader is not
    assert first is not None
    row = {"id": 1, "anchor_at": NOW, "next_fire_at": first,
           **{name: getattr(spec, name) for name in (
               "schedule_kind", "schedule_expr", "time_zone", "dst_nonexistent",
               "dst_ambiguous", "misfire", "misfire_grace_s", "jitter_s", "priority", "pool")}}
    later = first + timedelta(minutes=1)
    plan = materialise([row], now=later, horizon=later + timedelta(seconds=5))
    assert plan.cursors[0][0] == 1
