"""Deciding which fire times become runs: misfires, look-ahead, start deadlines.

The leader keeps a cursor per job (the first fire not yet planned) and calls
`plan_fires` each cycle. Work is bounded whatever the backlog: misfires are counted
with `Schedule.count_between`, and only the records kept are listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from common.errors import ScheduleError
from common.schedule.base import ONE_MICROSECOND, Schedule, require_aware

MisfireMode = Literal["fire_once", "fire_all", "skip"]


@dataclass(frozen=True)
class MisfirePolicy:
    """What to do with fires more than `grace` late.

    fire_all runs them (at most `max_fires`, the rest are skipped); fire_once runs only
    the latest as one catch-up run; skip runs none. Skipped fires are recorded.
    """

    mode: MisfireMode = "fire_once"
    grace: timedelta = timedelta(seconds=60)
    max_fires: int = 100

    def __post_init__(self) -> None:
        if self.mode not in ("fire_once", "fire_all", "skip"):
            raise ScheduleError(
                f"misfire mode {self.mode!r} is not one of 'fire_once', 'fire_all', 'skip'"
            )
        if self.grace < timedelta(0):
            raise ScheduleError(f"misfire grace must not be negative, got {self.grace}")
        if self.max_fires < 1:
            raise ScheduleError(f"misfire max_fires must be at least 1, got {self.max_fires}")


@dataclass(frozen=True)
class FirePlan:
    """The outcome of one planning step for one job."""

    fire: tuple[datetime, ...]  # fire times to materialise as runs (ascending)
    skipped: tuple[tuple[datetime, str], ...]  # fire times recorded as skipped, with a reason
    # Misfires skipped beyond the record bound, without a row of their own: the last record
    # of `skipped` then stands for them too (its reason gives their number and range).
    skipped_unrecorded: int
    next_fire_at: datetime | None  # the cursor to store; None when the schedule has ended


def plan_fires(
    schedule: Schedule,
    next_fire_at: datetime,
    *,
    now: datetime,
    horizon: datetime,
    misfire: MisfirePolicy,
    max_skip_records: int = 1000,
    max_on_time: int = 10_000,
) -> FirePlan:
    """Plan the fires f with next_fire_at <= f <= horizon.

    A fire before now - grace is a misfire and handled by `misfire`; the others are
    fired, at most `max_on_time` of them (the cursor then stops at the first one left).
    At most `max_skip_records` skipped fires are listed: when more are skipped, the last
    record summarises the rest (count and range), so every fire time still leaves a row.
    """
    require_aware(next_fire_at, "next_fire_at")
    require_aware(now, "now")
    if require_aware(horizon, "horizon") < now:
        raise ScheduleError(f"horizon {horizon.isoformat()} is before now {now.isoformat()}")
    if max_skip_records < 1 or max_on_time < 1:
        raise ScheduleError("max_skip_records and max_on_time must be at least 1")
    try:
        cutoff = now - misfire.grace
    except OverflowError:  # a grace longer than the calendar: nothing is ever late
        cutoff = datetime.min.replace(tzinfo=UTC)
    fires: list[datetime] = []
    skipped: list[tuple[datetime, str]] = []
    unrecorded = 0
    first = schedule.first_fire(next_fire_at)
    if first is not None and first < cutoff:
        late = schedule.count_between(first, cutoff)
        fire_now = {"fire_all": min(late, misfire.max_fires), "fire_once": 0, "skip": 0}
        fire: datetime | None = first
        for _ in range(fire_now[misfire.mode]):
            assert fire is not None
            fires.append(fire)
            fire = schedule.next_after(fire)
        catchup = None  # fire_once's one run: the latest misfire
        if misfire.mode == "fire_once":
            catchup = first if late == 1 else _last_before(schedule, first, cutoff)
        to_skip = late - len(fires) - (1 if misfire.mode == "fire_once" else 0)
        suffix = f", over max_fires {misfire.max_fires}" if misfire.mode == "fire_all" else ""
        singles = to_skip if to_skip <= max_skip_records else max_skip_records - 1
        for _ in range(singles):
            assert fire is not None
            lateness = int((now - fire).total_seconds())
            skipped.append((fire, f"misfire: {lateness} s late, policy {misfire.mode}{suffix}"))
            fire = schedule.next_after(fire)
        if singles < to_skip:
            assert fire is not None
            # The skipped fires end before the catch-up run (fire_once) or the cutoff.
            last = _last_before(schedule, fire, cutoff if catchup is None else catchup)
            skipped.append((fire, _summary(to_skip - singles, fire, last, now,
                                           f"policy {misfire.mode}{suffix}")))
        unrecorded = to_skip - len(skipped)
        if catchup is not None:
            fires.append(catchup)
    fire = schedule.first_fire(max(next_fire_at, cutoff))
    while fire is not None and fire <= horizon and len(fires) < max_on_time:
        fires.append(fire)
        fire = schedule.next_after(fire)
    return FirePlan(tuple(fires), tuple(skipped), unrecorded, fire)


def start_deadline_missed(
    scheduled_for: datetime, deadline: timedelta | None, now: datetime
) -> bool:
    """Whether a run due at `scheduled_for` may no longer start at `now` (None: no deadline)."""
    require_aware(scheduled_for, "scheduled_for")
    require_aware(now, "now")
    if deadline is None:
        return False
    if deadline < timedelta(0):
        raise ScheduleError(f"start deadline must not be negative, got {deadline}")
    return now - scheduled_for > deadline


def _summary(count: int, first: datetime, last: datetime, now: datetime, policy: str) -> str:
    """The reason of the one record that stands for `count` skipped fires."""
    return (f"misfire: {count} fires from {first.isoformat()} to {last.isoformat()} "
            f"({int((now - first).total_seconds())} to {int((now - last).total_seconds())} s "
            f"late, {policy}) recorded as this one row")


def _last_before(schedule: Schedule, fire: datetime, cutoff: datetime) -> datetime:
    """The latest fire before `cutoff`, given that `fire` is one; bisects in O(log span)."""
    lo, hi = fire, cutoff  # first_fire(lo) == lo < cutoff; first_fire(hi) >= cutoff or None
    while hi - lo > ONE_MICROSECOND:
        middle = lo + (hi - lo) / 2
        found = schedule.first_fire(middle)
        if found is not None and found < cutoff:
            lo = found
        else:
            hi = middle
    return lo
