from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import ScheduleError
from common.schedule import (
    Interval,
    MisfirePolicy,
    Once,
    parse_cron,
    plan_fires,
    start_deadline_missed,
)

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
EVERY_MINUTE = Interval(timedelta(minutes=1), T0)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def test_fires_within_grace_and_up_to_the_horizon_are_planned() -> None:
    plan = plan_fires(
        EVERY_MINUTE, T0, now=minutes(0.5), horizon=minutes(1.5), misfire=MisfirePolicy()
    )
    assert plan.fire == (minutes(0), minutes(1))
    assert plan.skipped == () and plan.skipped_unrecorded == 0
    assert plan.next_fire_at == minutes(2)


def test_a_fire_exactly_grace_late_is_still_on_time() -> None:
    plan = plan_fires(EVERY_MINUTE, T0, now=minutes(1), horizon=minutes(1), misfire=MisfirePolicy())
    assert plan.fire == (minutes(0), minutes(1))


def test_fire_once_runs_only_the_latest_misfire_and_skips_the_rest() -> None:
    now = minutes(10.5)
    plan = plan_fires(EVERY_MINUTE, T0, now=now, horizon=now, misfire=MisfirePolicy("fire_once"))
    assert plan.fire == (minutes(9), minutes(10))
    assert [f for f, _ in plan.skipped] == [minutes(n) for n in range(9)]
    assert plan.skipped[0][1] == "misfire: 630 s late, policy fire_once"
    assert plan.skipped[8][1] == "misfire: 150 s late, policy fire_once"
    assert plan.skipped_unrecorded == 0
    assert plan.next_fire_at == minutes(11)


def test_fire_all_runs_misfires_up_to_max_fires_and_skips_the_rest() -> None:
    now = minutes(10.5)
    policy = MisfirePolicy("fire_all", max_fires=4)
    plan = plan_fires(EVERY_MINUTE, T0, now=now, horizon=now, misfire=policy)
    assert plan.fire == (minutes(0), minutes(1), minutes(2), minutes(3), minutes(10))
    assert [f for f, _ in plan.skipped] == [minutes(n) for n in range(4, 10)]
    assert plan.skipped[0][1] == "misfire: 390 s late, policy fire_all, over max_fires 4"


def test_skip_runs_no_misfire() -> None:
    now = minutes(10.5)
    plan = plan_fires(EVERY_MINUTE, T0, now=now, horizon=now, misfire=MisfirePolicy("skip"))
    assert plan.fire == (minutes(10),)
    assert len(plan.skipped) == 10
    assert plan.skipped[-1][1] == "misfire: 90 s late, policy skip"


def test_skips_beyond_the_bound_leave_one_summary_row_for_their_range() -> None:
    now = minutes(10.5)
    policy = MisfirePolicy("skip")
    plan = plan_fires(EVERY_MINUTE, T0, now=now, horizon=now, misfire=policy, max_skip_records=3)
    assert [f for f, _ in plan.skipped] == [minutes(0), minutes(1), minutes(2)]
    assert plan.skipped[-1][1] == (
        f"misfire: 8 fires from {minutes(2).isoformat()} to {minutes(9).isoformat()} "
        "(510 to 90 s late, policy skip) recorded as this one row")
    assert plan.skipped_unrecorded == 7


def test_a_fire_once_summary_row_ends_before_the_catch_up_run() -> None:
    now = minutes(10.5)
    plan = plan_fires(EVERY_MINUTE, T0, now=now, horizon=now, misfire=MisfirePolicy(),
                      max_skip_records=2)
    assert plan.fire == (minutes(9), minutes(10))
    assert plan.skipped[-1][0] == minutes(1)
    assert plan.skipped[-1][1].startswith(
        f"misfire: 8 fires from {minutes(1).isoformat()} to {minutes(8).isoformat()} ")


def test_a_skip_bound_of_zero_is_refused_as_it_would_leave_fires_without_a_row() -> None:
    with pytest.raises(ScheduleError):
        plan_fires(EVERY_MINUTE, T0, now=minutes(10), horizon=minutes(10),
                   misfire=MisfirePolicy("skip"), max_skip_records=0)


@pytest.mark.parametrize(
    ("mode", "fired", "unrecorded"),
    [("fire_once", 1, 86_339 - 1000), ("fire_all", 100, 86_240 - 1000), ("skip", 0, 85_340)],
)
def test_a_day_of_downtime_of_a_per_second_cron_is_planned_quickly(
    mode: str, fired: int, unrecorded: int
) -> None:
    cron = parse_cron("* * * * * *", "Europe/Berlin")
    now = T0 + timedelta(days=1)
    began = time.perf_counter()
    plan = plan_fires(cron, T0, now=now, horizon=now, misfire=MisfirePolicy(mode))  # type: ignore[arg-type]
    assert time.perf_counter() - began < 0.5
    on_time = 61  # now - 60 s .. now
    assert len(plan.fire) == fired + on_time
    assert len(plan.skipped) == 1000 and plan.skipped_unrecorded == unrecorded
    assert plan.skipped[-1][1].startswith(f"misfire: {unrecorded + 1} fires from ")
    assert plan.next_fire_at == now + timedelta(seconds=1)
    if mode == "fire_once":
        assert plan.fire[0] == now - timedelta(seconds=61)


def test_on_time_fires_are_bounded_and_the_cursor_resumes_after_them() -> None:
    cron = parse_cron("* * * * * *")
    plan = plan_fires(
        cron, T0, now=T0, horizon=T0 + timedelta(days=1), misfire=MisfirePolicy(), max_on_time=10
    )
    assert plan.fire == tuple(T0 + timedelta(seconds=s) for s in range(10))
    assert plan.next_fire_at == T0 + timedelta(seconds=10)


def test_an_ended_schedule_leaves_no_cursor() -> None:
    once = Once(times=(T0,))
    plan = plan_fires(once, T0, now=minutes(10), horizon=minutes(11), misfire=MisfirePolicy())
    assert plan.fire == (T0,) and plan.next_fire_at is None


def test_a_cursor_beyond_the_horizon_plans_nothing() -> None:
    plan = plan_fires(EVERY_MINUTE, minutes(5), now=T0, horizon=minutes(1), misfire=MisfirePolicy())
    assert plan.fire == () and plan.next_fire_at == minutes(5)


def test_bad_planning_arguments_are_refused() -> None:
    with pytest.raises(ScheduleError, match="horizon .* is before now"):
        plan_fires(EVERY_MINUTE, T0, now=T0, horizon=minutes(-1), misfire=MisfirePolicy())
    with pytest.raises(ScheduleError, match="misfire mode 'sometimes'"):
        MisfirePolicy("sometimes")  # type: ignore[arg-type]
    with pytest.raises(ScheduleError, match="grace must not be negative"):
        MisfirePolicy(grace=timedelta(seconds=-1))
    with pytest.raises(ScheduleError, match="max_fires must be at least 1"):
        MisfirePolicy(max_fires=0)


@pytest.mark.parametrize(
    ("deadline", "now_offset", "missed"),
    [
        (None, timedelta(days=9), False),
        (timedelta(minutes=5), timedelta(minutes=5), False),
        (timedelta(minutes=5), timedelta(minutes=5, microseconds=1), True),
        (timedelta(0), timedelta(0), False),
        (timedelta(0), timedelta(seconds=1), True),
        (timedelta(minutes=5), timedelta(minutes=-1), False),
    ],
)
def test_start_deadline_is_missed_only_after_it_passes(
    deadline: timedelta | None, now_offset: timedelta, missed: bool
) -> None:
    assert start_deadline_missed(T0, deadline, T0 + now_offset) is missed


def test_huge_grace_and_deadline_do_not_overflow() -> None:
    policy = MisfirePolicy("skip", grace=timedelta(days=999_999_999))
    plan = plan_fires(EVERY_MINUTE, T0, now=minutes(10), horizon=minutes(10), misfire=policy)
    assert len(plan.fire) == 11 and plan.skipped == ()
    assert not start_deadline_missed(T0, timedelta(days=999_999_999), minutes(1))


def test_negative_start_deadline_is_refused() -> None:
    with pytest.raises(ScheduleError, match="start deadline must not be negative"):
        start_deadline_missed(T0, timedelta(seconds=-1), T0)


# --- properties -------------------------------------------------------------------------

_SCHEDULES = st.one_of(
    st.builds(
        Interval,
        st.integers(1, 7200).map(lambda s: timedelta(seconds=s)),
        st.integers(-7200, 7200).map(lambda s: T0 + timedelta(seconds=s)),
    ),
    st.sampled_from(
        ["*/7 * * * * *", "*/5 * * * *", "0 * * * *", "30 2 * * *", "15,45 * * * *"]
    ).map(lambda expr: parse_cron(expr, "Europe/Berlin")),
)
_POLICIES = st.builds(
    MisfirePolicy,
    st.sampled_from(["fire_once", "fire_all", "skip"]),
    st.integers(0, 600).map(lambda s: timedelta(seconds=s)),
    st.integers(1, 50),
)


@settings(max_examples=200, deadline=None)
@given(
    schedule=_SCHEDULES,
    cursor=st.integers(-86400, 3600),
    now=st.integers(0, 2 * 86400),
    ahead=st.integers(0, 3600),
    policy=_POLICIES,
    records=st.integers(1, 30),
)
def test_plans_respect_their_bounds_and_account_for_every_fire(
    schedule: Interval, cursor: int, now: int, ahead: int, policy: MisfirePolicy, records: int
) -> None:
    start = T0 + timedelta(seconds=cursor)
    current = T0 + timedelta(seconds=now)
    horizon = current + timedelta(seconds=ahead)
    plan = plan_fires(
        schedule, start, now=current, horizon=horizon, misfire=policy, max_skip_records=records
    )
    misfired = sum(1 for f in plan.fire if f < current - policy.grace)
    assert misfired <= (policy.max_fires if policy.mode == "fire_all" else 1)
    assert len(plan.skipped) <= records
    assert list(plan.fire) == sorted(set(plan.fire))
    planned = [*plan.fire, *(f for f, _ in plan.skipped)]
    assert all(start <= f <= horizon for f in planned)
    assert plan.next_fire_at is not None and all(plan.next_fire_at > f for f in planned)
    assert plan.next_fire_at > horizon
    accounted = len(plan.fire) + len(plan.skipped) + plan.skipped_unrecorded
    assert accounted == schedule.count_between(start, horizon + timedelta(microseconds=1))
    # The next cycle, from the cursor, plans nothing twice.
    later = plan_fires(schedule, plan.next_fire_at, now=horizon, horizon=horizon, misfire=policy)
    assert not set(later.fire) & set(plan.fire)
