"""Interval schedules: every fixed period of absolute time, from an anchor instant.

Accepted forms: "every 5 minutes", "every 2 hours", "every 30s", "every 1 day",
"every minute" (units s/sec/second, m/min/minute, h/hr/hour, d/day, w/week, with
plurals; "every" may be left out when the kind "every" is given), and ISO 8601
durations without years or months: PT5M, PT1H30M, P1D, P1W, PT1.5H. The period must
be a whole number of seconds, at least 1 s. DST changes do not affect intervals: fires
are anchor + k * period, k >= 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import ClassVar

from common.errors import ScheduleError
from common.schedule.base import LAST_YEAR, ONE_MICROSECOND, load_zone, require_aware

_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip
_NAMES = ((604800, "week"), (86400, "day"), (3600, "hour"), (60, "minute"), (1, "second"))
# "every" may be left out when the kind is given: "5 minutes", "30s".
_EVERY = re.compile(r"(?:every\s+)?(?:([+-]?\d+(?:\.\d+)?)\s*)?([a-z]+)", re.IGNORECASE)
_NUM = r"(\d+(?:[.,]\d+)?)"
_ISO = re.compile(
    rf"(-)?P(?:{_NUM}Y)?(?:{_NUM}M)?(?:{_NUM}W)?(?:{_NUM}D)?"
    rf"(?:T(?=\d)(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?",
    re.IGNORECASE,
)
_ISO_UNITS = (0, 0, 604800, 86400, 3600, 60, 1)  # seconds per Y M W D H M S (Y, M refused)
_LONGEST = 100 * 366 * 86400
_HELP = (
    "expected 'every N UNIT' (UNIT: seconds, minutes, hours, days or weeks; e.g. 'every 5"
    " minutes', 'every 30s') or an ISO 8601 duration like PT5M, PT1H30M or P1D"
)


@dataclass(frozen=True)
class Interval:
    """Fires at anchor + k * period for k >= 0."""

    period: timedelta
    anchor: datetime
    tz: str = "UTC"
    kind: ClassVar[str] = "every"

    def first_fire(self, start: datetime) -> datetime | None:
        """Earliest anchor + k * period at or after `start`."""
        return self._fire(self._index(require_aware(start, "start")))

    def next_after(self, after: datetime) -> datetime | None:
        """Earliest anchor + k * period after `after`."""
        return self._fire(self._index(require_aware(after, "after") + ONE_MICROSECOND))

    def count_between(self, start: datetime, end: datetime) -> int:
        """Number of fires in [start, end), by arithmetic."""
        require_aware(start, "start")
        return max(0, self._index(require_aware(end, "end")) - self._index(start))

    def _index(self, start: datetime) -> int:
        """The smallest k >= 0 with anchor + k * period >= start."""
        return max(0, -((self.anchor - start) // self.period))

    def _fire(self, index: int) -> datetime | None:
        """anchor + index * period; None near the end of the calendar, as for cron."""
        try:
            fire = self.anchor + self.period * index
        except OverflowError:
            return None
        return fire if fire.year < LAST_YEAR else None

    def describe(self) -> str:
        """E.g. "every 5 minutes from 2026-12-01T09:30:00+01:00"."""
        local = self.anchor.astimezone(load_zone(self.tz)).isoformat()
        return f"every {format_period(self.period)} from {local}"


def parse_interval(expr: str, *, anchor: datetime, tz: str = "UTC") -> Interval:
    """Parse "every N UNIT" or an ISO 8601 duration; fires start at `anchor`."""
    load_zone(tz)
    return Interval(
        period=parse_period(expr), anchor=require_aware(anchor, "anchor").astimezone(UTC), tz=tz
    )


def parse_period(expr: str) -> timedelta:
    """The period of "every N UNIT" or an ISO 8601 duration, validated."""
    text = expr.strip()
    every, iso = _EVERY.fullmatch(text), _ISO.fullmatch(text)
    if every:
        unit = _UNITS.get(every.group(2).lower())
        if unit is None:
            raise ScheduleError(f"interval {text!r}: unknown unit {every.group(2)!r}; {_HELP}")
        seconds = Decimal(every.group(1) or 1) * unit
    elif iso and text.upper() not in ("P", "-P"):
        if iso.group(2) or iso.group(3):
            raise ScheduleError(
                f"interval {text!r}: years and months have no fixed length;"
                " use a cron schedule instead (e.g. '0 0 1 * *' for monthly)"
            )
        parts = zip(iso.groups()[1:], _ISO_UNITS, strict=True)
        seconds = sum((Decimal(v.replace(",", ".")) * u for v, u in parts if v), Decimal(0))
        if iso.group(1):
            seconds = -seconds
    else:
        raise ScheduleError(f"interval {text!r}: {_HELP}")
    if seconds <= 0:
        raise ScheduleError(f"interval {text!r}: the period must be positive")
    if seconds != seconds.to_integral_value():
        raise ScheduleError(
            f"interval {text!r}: the period must be a whole number of seconds"
            f" (at least 1 s), not {seconds.normalize()} s"
        )
    if seconds > _LONGEST:
        raise ScheduleError(f"interval {text!r}: the period must be at most 100 years")
    return timedelta(seconds=int(seconds))


def format_period(period: timedelta) -> str:
    """Canonical text of a period: "5 minutes", "1 day", "90 seconds"."""
    seconds = int(period.total_seconds())
    size, name = next((s, n) for s, n in _NAMES if seconds % s == 0)
    count = seconds // size
    return f"{count} {name}{'' if count == 1 else 's'}"
