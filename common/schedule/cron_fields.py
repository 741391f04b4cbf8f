"""Cron expression parsing and matching against local wall-clock times (no zones here).

Syntax and meaning follow crontab(5) as Debian's cron implements it; see
`common.schedule.cron` for the summary. Everything here works on naive wall times.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from common.errors import ScheduleError
from common.schedule.base import LAST_YEAR, ONE_SECOND

FIELD_NAMES = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")
_BOUNDS = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_NAMES = {
    4: {name: i for i, name in enumerate(_MONTH_NAMES, 1)},
    5: {name: i for i, name in enumerate(_DAY_NAMES)},
}
_NAME_HINTS = {4: " or month name (JAN-DEC)", 5: " or day name (SUN-SAT)"}
_LONGEST_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
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
    """The parsed fields of a cron expression, as sorted value tuples (0 = Sunday)."""

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_or: bool  # both day fields restricted: a day matches when either field matches

    def day_matches(self, day: date) -> bool:
        """Whether `day` matches the month and day fields (the crontab(5) day rule)."""
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.weekday() + 1) % 7 in self.weekdays  # Python's Monday 0 -> cron's 1
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
    sets = [_parse_field(expr, i, part) for i, part in enumerate(parts)]
    fields = CronFields(
        seconds=tuple(sorted(sets[0])),
        minutes=tuple(sorted(sets[1])),
        hours=tuple(sorted(sets[2])),
        days=frozenset(sets[3]),
        months=frozenset(sets[4]),
        weekdays=frozenset(v % 7 for v in sets[5]),
        day_or=not parts[3].startswith("*") and not parts[5].startswith("*"),
    )
    if not fields.day_or and not any(d <= _LONGEST_MONTH[m] for m in sets[4] for d in sets[3]):
        raise ScheduleError(
            f"cron expression {expr!r} can never fire: no month in month field {parts[4]!r}"
            f" has a day in day-of-month field {parts[3]!r}"
        )
    return text, fields


def _parse_field(expr: str, index: int, text: str) -> set[int]:
    low, high = _BOUNDS[index]

    def fail(problem: str) -> ScheduleError:
        field = FIELD_NAMES[index]
        return ScheduleError(f"cron expression {expr!r}: {field} field {text!r}: {problem}")

    def value(token: str) -> int:
        named = _NAMES.get(index, {}).get(token.upper())
        if named is not None:
            return named
        if not token.isascii() or not token.isdigit():
            raise fail(f"{token!r} is not a number{_NAME_HINTS.get(index, '')}")
        number = int(token)
        if not low <= number <= high:
            raise fail(f"{number} is out of range {low}-{high}")
        return number

    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise fail("empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            span = high - low + 1
            if not step_text.isascii() or not step_text.isdigit():
                raise fail(f"step {step_text!r} is not a number")
            step = int(step_text)
            if not 1 <= step <= span:
                raise fail(f"step {step} is out of range 1-{span}")
        if base == "*":
            first, last = low, high
        elif "-" in base:
            start_text, _, end_text = base.partition("-")
            if "-" in end_text or not start_text or not end_text:
                raise fail(f"{base!r} is not a range like 1-5")
            first, last = value(start_text), value(end_text)
            if first > last:
                raise fail(f"range {base} runs backwards; list both parts instead")
        else:
            # "5/10" means 5-max/10; a bare value without a step is just that value.
            first = value(base)
            last = high if slash else first
        values.update(range(first, last + 1, step))
    return values


def _ceil_second(wall: datetime) -> datetime:
    return wall.replace(microsecond=0) + ONE_SECOND if wall.microsecond else wall


def _second_of_day(wall: datetime) -> int:
    return wall.hour * 3600 + wall.minute * 60 + wall.second


def _next_month_start(day: date) -> date:
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return date(year, month, 1)
