"""The two day fields of a cron expression, with the Quartz forms beyond crontab(5).

Day-of-month: day numbers, `L` (the last day of the month), `LW` (the last weekday,
Monday to Friday, of the month) and `nW` (the weekday nearest day n: a Saturday moves to
the Friday before, a Sunday to the Monday after, but never into another month, so `1W` on
a Saturday is Monday the 3rd and `31W` on a Sunday is Friday the 29th; like a plain `31`,
`31W` does not fire in a month without a 31st).

Day-of-week: weekday numbers (0 and 7 are Sunday), `dL` (the last weekday d of the month,
`5L` the last Friday) and `d#n` (the nth weekday d of the month, `5#3` the third Friday;
`#5` does not fire in a month with only four of that weekday). Names work too: `FRIL`,
`FRI#3`.

Matching takes the day of the month, the month's length and the day's weekday (0 =
Sunday), so the same test serves real dates and the can-it-ever-fire check over every
month shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from common.schedule.cron_items import FieldReader

SATURDAY, SUNDAY = 6, 0
_NEAREST = re.compile(r"(\d+)W", re.IGNORECASE)
_LAST_OF = re.compile(r"(\w+)L", re.IGNORECASE)
_NTH_OF = re.compile(r"(\w+)#(.*)")


@dataclass(frozen=True)
class DayOfMonth:
    """A day-of-month field: plain days, and whether `L` or `LW` and which `nW` it holds."""

    days: frozenset[int]
    last: bool = False
    last_weekday: bool = False
    nearest_weekday: frozenset[int] = frozenset()

    def matches(self, day: int, length: int, weekday: int) -> bool:
        """Whether `day` of a month of `length` days, falling on `weekday`, matches."""
        if day in self.days or (self.last and day == length):
            return True
        if self.last_weekday and day == nearest_weekday(length, length, weekday + length - day):
            return True
        return any(
            target <= length and day == nearest_weekday(target, length, weekday + target - day)
            for target in self.nearest_weekday
        )


@dataclass(frozen=True)
class DayOfWeek:
    """A day-of-week field (0 = Sunday): plain weekdays, `dL` weekdays, `d#n` pairs."""

    days: frozenset[int]
    last: frozenset[int] = frozenset()
    nth: frozenset[tuple[int, int]] = frozenset()

    def matches(self, day: int, length: int, weekday: int) -> bool:
        """Whether `day` of a month of `length` days, falling on `weekday`, matches."""
        return (
            weekday in self.days
            or (weekday in self.last and day + 7 > length)
            or (weekday, (day + 6) // 7) in self.nth
        )


def nearest_weekday(target: int, length: int, target_weekday: int) -> int:
    """The day of the weekday nearest day `target` (on weekday `target_weekday`, any
    integer read modulo 7) in a month of `length` days, without leaving the month."""
    weekday = target_weekday % 7
    if weekday == SATURDAY:
        return target + 2 if target == 1 else target - 1
    if weekday == SUNDAY:
        return target - 2 if target == length else target + 1
    return target


def parse_day_of_month(field: FieldReader) -> DayOfMonth:
    """Day numbers, ranges and steps, plus `L`, `LW` and `nW` items."""
    plain: list[str] = []
    last = last_weekday = False
    nearest: set[int] = set()
    for item in field.items:
        upper = item.upper()
        if upper == "L":
            last = True
        elif upper == "LW":
            last_weekday = True
        elif found := _NEAREST.fullmatch(item):
            nearest.add(field.value(found[1]))
        else:
            plain.append(item)
    return DayOfMonth(frozenset(field.values(plain)), last, last_weekday, frozenset(nearest))


def parse_day_of_week(field: FieldReader) -> DayOfWeek:
    """Weekdays, ranges and steps (0 and 7 are Sunday), plus `dL` and `d#n` items."""
    plain: list[str] = []
    last: set[int] = set()
    nth: set[tuple[int, int]] = set()
    for item in field.items:
        if found := _LAST_OF.fullmatch(item):
            last.add(field.value(found[1]) % 7)
        elif found := _NTH_OF.fullmatch(item):
            weekday, count = field.value(found[1]) % 7, found[2]
            if not count.isascii() or not count.isdigit():
                raise field.fail(f"{count!r} after # is not a number")
            if not 1 <= int(count) <= 5:
                raise field.fail(
                    f"#{int(count)} is out of range 1-5: no month has more than five of a weekday"
                )
            nth.add((weekday, int(count)))
        else:
            plain.append(item)
    days = frozenset(v % 7 for v in field.values(plain))
    return DayOfWeek(days, frozenset(last), frozenset(nth))
