"""Cron expression parsing and matching against local wall-clock times (no zones here).

Syntax and meaning follow crontab(5) as Debian's cron implements it, plus Quartz's day
forms (`cron_days`); see `common.schedule.cron` for the summary. Everything here works on
naive wall times.
"""

from __future__ import annotations

from bisect import bisect_left
from calendar import isleap
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from common.errors import ScheduleError
from common.schedule.base import LAST_YEAR, ONE_SECOND
from common.schedule.cron_days import DayOfMonth, DayOfWeek, parse_day_of_month, parse_day_of_week
from common.schedule.cron_items import FieldReader

_MONTH_LENGTHS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_FIVE = "minute hour day-of-month month day-of-week"
# A Gregorian calendar repeats every 400 years, so a search this long finds any match.
_SEARCH_YEARS = 401

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


@dataclass(frozen=True)
class CronFields:
    """The parsed fields of a cron expression: times as sorted value tuples, the days."""

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: DayOfMonth
    months: frozenset[int]
    weekdays: DayOfWeek
    day_or: bool  # both day fields restricted: a day matches when either field matches

    def day_matches(self, day: date) -> bool:
        """Whether `day` matches the month and day fields (the crontab(5) day rule)."""
        if day.month not in self.months:
            return False
        # Python's Monday 0 -> cron's 1.
        return self.day_rule(day.day, _month_length(day), (day.weekday() + 1) % 7)

    def day_rule(self, day: int, length: int, weekday: int) -> bool:
        """Whether `day` of a month of `length` days, on `weekday` (0 = Sunday), matches."""
        dom = self.days.matches(day, length, weekday)
        dow = self.weekdays.matches(day, length, weekday)
        return (dom or dow) if self.day_or else (dom and dow)

    def next_match(self, wall: datetime) -> datetime | None:
        """The earliest matching naive wall time >= `wall`, or None before year 9999."""
        wall = _ceil_second(wall)
        day, floor = wall.date(), wall.hour * 3600 + wall.minute * 60 + wall.second
        last_year = min(LAST_YEAR, day.year + _SEARCH_YEARS)
        while day.year <= last_year:
            if day.month not in self.months:
                day, floor = _next_month_start(day), 0
                continue
            if self.day_matches(day):
                found = self._time_from(floor)
                if found is not None:
                    return datetime.combine(day, found)
            day, floor = day + timedelta(days=1), 0
        return None

    def count_matches(self, start: datetime, end: datetime) -> int:
        """Number of matching naive wall times w with start <= w < end."""
        start, end = _ceil_second(start), _ceil_second(end)
        count, day = 0, start.date()
        while start < end and day <= end.date():
            if self.day_matches(day):
                lo = _second_of_day(start) if day == start.date() else 0
                hi = _second_of_day(end) if day == end.date() else 86400
                count += self._times_before(hi) - self._times_before(lo)
            day += timedelta(days=1)
        return count

    def _time_from(self, floor: int) -> time | None:
        """The earliest matching time of day at or after second `floor` of the day."""
        hour, rest = divmod(floor, 3600)
        minute, second = divmod(rest, 60)
        for h in self.hours[bisect_left(self.hours, hour) :]:
            if h > hour:
                return time(h, self.minutes[0], self.seconds[0])
            for m in self.minutes[bisect_left(self.minutes, minute) :]:
                if m > minute:
                    return time(h, m, self.seconds[0])
                i = bisect_left(self.seconds, second)
                if i < len(self.seconds):
                    return time(h, m, self.seconds[i])
        return None

    def _times_before(self, second_of_day: int) -> int:
        """Number of matching times of day earlier than `second_of_day`."""
        hour, rest = divmod(second_of_day, 3600)
        minute, second = divmod(rest, 60)
        i = bisect_left(self.hours, hour)
        count = i * len(self.minutes) * len(self.seconds)
        if i < len(self.hours) and self.hours[i] == hour:
            j = bisect_left(self.minutes, minute)
            count += j * len(self.seconds)
            if j < len(self.minutes) and self.minutes[j] == minute:
                count += bisect_left(self.seconds, second)
        return count


def parse_cron_fields(expr: str) -> tuple[str, CronFields]:
    """Parse a 5- or 6-field cron expression or @macro into (canonical text, fields)."""
    text = " ".join(expr.split())
    if text.startswith("@"):
        macro = text.lower()
        if macro not in MACROS:
            known = ", ".join(MACROS)
            raise ScheduleError(f"cron expression {expr!r}: unknown macro; expected one of {known}")
        return macro, parse_cron_fields(MACROS[macro])[1]
    parts = text.split(" ") if text else []
    if len(parts) not in (5, 6):
        raise ScheduleError(
            f"cron expression {expr!r}: {len(parts)} fields given, expected 5 ({_FIVE})"
            f" or 6 (second {_FIVE})"
        )
    if len(parts) == 5:
        parts = ["0", *parts]
    field = [FieldReader(expr, i, part) for i, part in enumerate(parts)]
    day_or = not parts[3].startswith("*") and not parts[5].startswith("*")
    fields = CronFields(
        seconds=tuple(sorted(field[0].values())),
        minutes=tuple(sorted(field[1].values())),
        hours=tuple(sorted(field[2].values())),
        days=parse_day_of_month(field[3]),
        months=frozenset(field[4].values()),
        weekdays=parse_day_of_week(field[5]),
        day_or=day_or,
    )
    if not _can_fire(fields):
        raise ScheduleError(
            f"cron expression {expr!r} can never fire: no month in month field {parts[4]!r}"
            f" has a day that matches day-of-month field {parts[3]!r}"
            f" {'or' if day_or else 'and'} day-of-week field {parts[5]!r}"
        )
    return text, fields


def _can_fire(fields: CronFields) -> bool:
    """Whether a month of the month field has a matching day. Whether a day matches depends
    on its month, the month's length and the weekday of its 1st, and every such month shape
    occurs in each 400-year Gregorian cycle, so this tells whether the fields ever fire."""
    for month in fields.months:
        for length in (28, 29) if month == 2 else (_MONTH_LENGTHS[month],):
            for first in range(7):
                for day in range(1, length + 1):
                    if fields.day_rule(day, length, (first + day - 1) % 7):
                        return True
    return False


def _month_length(day: date) -> int:
    return 29 if day.month == 2 and isleap(day.year) else _MONTH_LENGTHS[day.month]


def _ceil_second(wall: datetime) -> datetime:
    return wall.replace(microsecond=0) + ONE_SECOND if wall.microsecond else wall


def _second_of_day(wall: datetime) -> int:
    return wall.hour * 3600 + wall.minute * 60 + wall.second


def _next_month_start(day: date) -> date:
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return date(year, month, 1)
