from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import InvalidInput, ScheduleError
from common.schedule import (
    DstPolicy,
    Immediate,
    Interval,
    Once,
    detect_kind,
    fire_times,
    parse_schedule,
)
from common.schedule.interval import parse_period

NOW = datetime(2026, 1, 2, 10, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("expr", "seconds"),
    [
        ("every 5 minutes", 300),
        ("every 2 hours", 7200),
        ("every 30s", 30),
        ("every 1 day", 86400),
        ("every 90 seconds", 90),
        ("every minute", 60),
        ("Every 1 Week", 604800),
        ("every 1.5 minutes", 90),
        ("every 10 secs", 10),
        ("PT5M", 300),
        ("PT1H30M", 5400),
        ("P1D", 86400),
        ("P2W", 1209600),
        ("P1DT12H", 129600),
        ("PT1.5H", 5400),
        ("PT0,5M", 30),
        ("pt10s", 10),
        ("5 minutes", 300),
        ("90s", 90),
    ],
)
def test_intervals_parse_to_their_period(expr: str, seconds: int) -> None:
    assert parse_period(expr) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("every 0 minutes", "the period must be positive"),
        ("every -5 minutes", "the period must be positive"),
        ("-PT5M", "the period must be positive"),
        ("PT0S", "the period must be positive"),
        ("PT0.5S", "must be a whole number of seconds (at least 1 s), not 0.5 s"),
        ("every 0.5s", "must be a whole number of seconds"),
        ("P1M", "years and months have no fixed length; use a cron schedule"),
        ("P1Y2D", "years and months have no fixed length"),
        ("every 5 fortnights", "unknown unit 'fortnights'"),
        ("every", "unknown unit 'every'; expected 'every N UNIT'"),
        ("every five minutes", "expected 'every N UNIT'"),
        ("P", "expected 'every N UNIT'"),
        ("PT", "expected 'every N UNIT'"),
        ("P1DT", "expected 'every N UNIT'"),
        ("every 1000 years", "unknown unit 'years'"),
        ("P99999D", "at most 100 years"),
    ],
)
def test_bad_intervals_are_rejected_with_a_reason(expr: str, message: str) -> None:
    with pytest.raises(ScheduleError) as error:
        parse_schedule(expr, kind="every", now=NOW)
    assert message in str(error.value)
    assert isinstance(error.value, InvalidInput)


def test_interval_fires_at_anchor_plus_whole_periods() -> None:
    schedule = parse_schedule("every 5 minutes", now=NOW)
    assert isinstance(schedule, Interval)
    assert schedule.first_fire(NOW - timedelta(hours=1)) == NOW
    assert schedule.first_fire(NOW) == NOW
    assert schedule.first_fire(NOW + timedelta(seconds=1)) == NOW + timedelta(minutes=5)
    assert schedule.next_after(NOW) == NOW + timedelta(minutes=5)
    assert schedule.next_after(NOW + timedelta(minutes=5)) == NOW + timedelta(minutes=10)
    assert schedule.count_between(NOW, NOW + timedelta(minutes=15)) == 3
    assert schedule.count_between(NOW + timedelta(minutes=1), NOW) == 0
    assert schedule.describe() == "every 5 minutes from 2026-01-02T10:00:00+00:00"


def test_intervals_end_quietly_at_the_end_of_the_calendar() -> None:
    schedule = Interval(timedelta(weeks=100), datetime(9990, 1, 1, tzinfo=UTC))
    assert len(fire_times(schedule, NOW, 10)) == 5


def test_intervals_run_in_absolute_time_through_dst_changes() -> None:
    anchor = at("2026-03-29T00:30:00+01:00")
    schedule = parse_schedule("every 1 hour", tz="Europe/Berlin", now=anchor)
    local = [
        f.astimezone(ZoneInfo("Europe/Berlin")).isoformat() for f in fire_times(schedule, anchor, 3)
    ]
    assert local == [
        "2026-03-29T00:30:00+01:00",
        "2026-03-29T01:30:00+01:00",
        "2026-03-29T03:30:00+02:00",
    ]
    assert schedule.describe() == "every 1 hour from 2026-03-29T00:30:00+01:00"


@settings(max_examples=100, deadline=None)
@given(
    period=st.integers(1, 10**6),
    offset=st.integers(-(10**8), 10**8),
    periods=st.integers(0, 50),
    extra=st.integers(0, 10**6),
)
def test_interval_counting_agrees_with_listing(
    period: int, offset: int, periods: int, extra: int
) -> None:
    schedule = Interval(timedelta(seconds=period), NOW)
    start = NOW + timedelta(seconds=offset)
    end = start + timedelta(seconds=period * periods + extra)
    fire, listed = schedule.first_fire(start), 0
    assert fire is not None and (fire - NOW) % schedule.period == timedelta(0)
    while fire is not None and fire < end:
        assert fire >= max(start, NOW)
        listed, fire = listed + 1, schedule.next_after(fire)
    assert schedule.count_between(start, end) == listed


@pytest.mark.parametrize(
    ("expr", "tz", "dst", "expected"),
    [
        ("2026-12-01T09:30:00+01:00", "UTC", DstPolicy(), ["2026-12-01T08:30:00+00:00"]),
        ("2026-12-01T08:30:00Z", "Europe/Berlin", DstPolicy(), ["2026-12-01T08:30:00+00:00"]),
        ("2026-12-01T09:30:00", "Europe/Berlin", DstPolicy(), ["2026-12-01T08:30:00+00:00"]),
        ("2026-12-01", "America/New_York", DstPolicy(), ["2026-12-01T05:00:00+00:00"]),
        # Spring gap: 02:30 does not exist in Berlin on 2026-03-29; shift fires at 03:00 CEST.
        ("2026-03-29T02:30:00", "Europe/Berlin", DstPolicy(), ["2026-03-29T01:00:00+00:00"]),
        # Autumn: 02:30 happens twice in Berlin on 2026-10-25.
        ("2026-10-25T02:30:00", "Europe/Berlin", DstPolicy(), ["2026-10-25T00:30:00+00:00"]),
        ("2026-10-25T02:30:00", "Europe/Berlin", DstPolicy(ambiguous="twice"),
         ["2026-10-25T00:30:00+00:00", "2026-10-25T01:30:00+00:00"]),
        ("2026-11-01T01:30:00", "America/New_York", DstPolicy(ambiguous="twice"),
         ["2026-11-01T05:30:00+00:00", "2026-11-01T06:30:00+00:00"]),
    ],
)  # fmt: skip
def test_one_off_times_resolve_in_the_jobs_zone(
    expr: str, tz: str, dst: DstPolicy, expected: list[str]
) -> None:
    schedule = parse_schedule(expr, tz=tz, dst=dst, now=NOW)
    assert isinstance(schedule, Once) and schedule.kind == "at"
    assert [f.isoformat() for f in fire_times(schedule, NOW, 5)] == expected


def test_a_one_off_time_in_a_dst_gap_is_refused_under_skip() -> None:
    with pytest.raises(ScheduleError, match="does not exist in Europe/Berlin"):
        parse_schedule("2026-03-29T02:30:00", tz="Europe/Berlin", dst=DstPolicy("skip"), now=NOW)


def test_a_one_off_time_in_the_past_is_refused_unless_allowed() -> None:
    with pytest.raises(ScheduleError, match="is in the past .*; pass allow_past"):
        parse_schedule("2026-01-01T10:00:00Z", now=NOW)
    allowed = parse_schedule("2026-01-01T10:00:00Z", now=NOW, allow_past=True)
    assert fire_times(allowed, NOW, 3) == [NOW]


def test_a_one_off_fires_once_and_then_never() -> None:
    schedule = parse_schedule("2026-12-01T09:30:00+01:00", tz="Europe/Berlin", now=NOW)
    fire = at("2026-12-01T08:30:00+00:00")
    assert schedule.first_fire(fire) == fire
    assert schedule.next_after(fire) is None
    assert schedule.count_between(NOW, fire + timedelta(seconds=1)) == 1
    assert schedule.describe() == "at 2026-12-01T09:30:00+01:00 in Europe/Berlin"


def test_now_fires_once_at_the_parse_time() -> None:
    schedule = parse_schedule(" NOW ", now=NOW)
    assert isinstance(schedule, Immediate) and schedule.kind == "now"
    assert fire_times(schedule, NOW, 3) == [NOW]
    assert schedule.next_after(NOW) is None
    assert schedule.count_between(NOW, NOW + timedelta(seconds=1)) == 1
    assert schedule.describe() == "now (2026-01-02T10:00:00+00:00)"


@pytest.mark.parametrize(
    ("expr", "kind"),
    [
        ("now", "now"),
        ("every 5 minutes", "every"),
        ("PT5M", "every"),
        ("P1D", "every"),
        ("-PT5M", "every"),
        ("2026-12-01T09:30:00Z", "at"),
        ("2026-12-01", "at"),
        ("*/5 * * * *", "cron"),
        ("0 0 1 1 *", "cron"),
        ("@daily", "cron"),
    ],
)
def test_schedule_kind_is_detected_from_the_expression(expr: str, kind: str) -> None:
    assert detect_kind(expr) == kind


@pytest.mark.parametrize(
    ("expr", "kwargs", "message"),
    [
        ("*/5 * * * *", {"tz": "Europe/Berln"}, "unknown time zone 'Europe/Berln'"),
        ("*/5 * * * *", {"kind": "weekly"}, "unknown schedule kind 'weekly'"),
        ("2026-13-01T00:00:00", {}, "is not ISO 8601"),
        ("now", {"kind": "cron"}, "1 fields given"),
        ("*/5 * * * *", {"kind": "now"}, "is not 'now'"),
    ],
)
def test_parse_schedule_reports_bad_input(expr: str, kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_schedule(expr, now=NOW, **kwargs)  # type: ignore[arg-type]


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ScheduleError, match="has no time zone"):
        parse_schedule("now", now=datetime(2026, 5, 1))


def test_dst_policy_values_are_checked() -> None:
    with pytest.raises(ScheduleError, match="'later' is not one of 'shift', 'skip'"):
        DstPolicy(nonexistent="later")  # type: ignore[arg-type]
    with pytest.raises(ScheduleError, match="'thrice' is not one of 'once', 'twice'"):
        DstPolicy(ambiguous="thrice")  # type: ignore[arg-type]


def test_fire_times_lists_fewer_when_the_schedule_ends() -> None:
    assert fire_times(parse_schedule("now", now=NOW), NOW, 0) == []
    with pytest.raises(ScheduleError, match="count must not be negative"):
        fire_times(parse_schedule("now", now=NOW), NOW, -1)
    assert fire_times(Once(times=(NOW,)), NOW + timedelta(seconds=1), 2) == []
