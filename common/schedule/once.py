"""One-off schedules: `now`, and once at an ISO 8601 time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from common.errors import ScheduleError
from common.schedule.base import LAST_YEAR, DstPolicy, load_zone, require_aware
from common.schedule.tz import resolve


@dataclass(frozen=True)
class Immediate:
    """Fires once, at the `now` given when it was parsed."""

    at: datetime
    kind: ClassVar[str] = "now"

    def first_fire(self, start: datetime) -> datetime | None:
        """`at` if it is at or after `start`."""
        return self.at if self.at >= require_aware(start, "start") else None

    def next_after(self, after: datetime) -> datetime | None:
        """`at` if it is after `after`."""
        return self.at if self.at > require_aware(after, "after") else None

    def count_between(self, start: datetime, end: datetime) -> int:
        """1 if start <= at < end, else 0."""
        return int(require_aware(start, "start") <= self.at < require_aware(end, "end"))

    def describe(self) -> str:
        """E.g. "now (2026-12-01T08:30:00+00:00)"."""
        return f"now ({self.at.isoformat()})"


@dataclass(frozen=True)
class Once:
    """Fires at a given time: one instant, or two for a repeated local time under "twice"."""

    times: tuple[datetime, ...]
    tz: str = "UTC"
    kind: ClassVar[str] = "at"

    def first_fire(self, start: datetime) -> datetime | None:
        """Earliest of `times` at or after `start`."""
        require_aware(start, "start")
        return next((t for t in self.times if t >= start), None)

    def next_after(self, after: datetime) -> datetime | None:
        """Earliest of `times` after `after`."""
        require_aware(after, "after")
        return next((t for t in self.times if t > after), None)

    def count_between(self, start: datetime, end: datetime) -> int:
        """How many of `times` lie in [start, end)."""
        require_aware(start, "start")
        require_aware(end, "end")
        return sum(1 for t in self.times if start <= t < end)

    def describe(self) -> str:
        """E.g. "at 2026-12-01T09:30:00+01:00 in Europe/Berlin"."""
        zone = load_zone(self.tz)
        shown = " and ".join(t.astimezone(zone).isoformat() for t in self.times)
        return f"at {shown} in {self.tz}"


def parse_immediate(expr: str, now: datetime) -> Immediate:
    """The schedule `now`, firing at the given `now`."""
    if expr.strip().lower() != "now":
        raise ScheduleError(f"schedule {expr!r} is not 'now'")
    return Immediate(at=require_aware(now, "now").astimezone(UTC))


def parse_once(
    expr: str, *, tz: str, dst: DstPolicy, now: datetime, allow_past: bool = False
) -> Once:
    """Once at an ISO 8601 time; a time without offset is read in `tz` under `dst`.

    A time before `now` is an error unless `allow_past`, which fires it at `now` instead.
    """
    require_aware(now, "now")
    times = tuple(t for t in local_instants(expr, tz, dst) if t >= now)
    if not times:
        if not allow_past:
            raise ScheduleError(
                f"time {expr.strip()!r} is in the past (now is {now.isoformat()});"
                " pass allow_past (--allow-past) to run it now"
            )
        times = (now.astimezone(UTC),)
    return Once(times=times, tz=tz)


def parse_instant(text: str, tz: str = "UTC") -> datetime:
    """An ISO 8601 time as aware UTC; without an offset it is read in `tz` (gaps shift)."""
    return local_instants(text, tz, DstPolicy())[0]


def local_instants(text: str, tz: str, dst: DstPolicy) -> tuple[datetime, ...]:
    """The instants (aware UTC) an ISO 8601 time denotes: two for a repeated local time
    under "twice", none never (a skipped time under "skip" is an error)."""
    zone = load_zone(tz)
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ScheduleError(
            f"time {text.strip()!r} is not ISO 8601; expected e.g. 2026-12-01T09:30:00+01:00,"
            " 2026-12-01T08:30:00Z, or 2026-12-01T09:30:00 in the job's time zone"
        ) from None
    if not 1 < parsed.year < LAST_YEAR:
        raise ScheduleError(f"time {text.strip()!r} is out of range (years 2-{LAST_YEAR - 1})")
    if parsed.tzinfo is not None:
        return (parsed.astimezone(UTC),)
    wall = resolve(parsed, zone)
    if wall.first is None:
        if dst.nonexistent == "skip":
            raise ScheduleError(
                f"time {text.strip()!r} does not exist in {tz} (skipped by a DST change)"
                " and the nonexistent-time policy is 'skip'; pick another time or use 'shift'"
            )
        assert wall.transition is not None
        return (wall.transition,)
    if wall.second is not None and dst.ambiguous == "twice":
        return (wall.first, wall.second)
    return (wall.first,)
