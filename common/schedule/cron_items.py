"""Reading the items of one cron field: numbers, names, ranges and steps (crontab(5)).

Errors name the expression, the field and the problem; a token that holds one of the
Quartz letters (`L`, `W`, `#`) where they do not belong says where they do.
"""

from __future__ import annotations

from common.errors import ScheduleError

FIELD_NAMES = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")
DAY_OF_MONTH, DAY_OF_WEEK = 3, 5
_BOUNDS = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_NAMES = {
    4: {name: i for i, name in enumerate(_MONTH_NAMES, 1)},
    DAY_OF_WEEK: {name: i for i, name in enumerate(_DAY_NAMES)},
}
_NAME_HINTS = {4: " or month name (JAN-DEC)", DAY_OF_WEEK: " or day name (SUN-SAT)"}


class FieldReader:
    """The text of field `index` (0 = second) of cron expression `expr`."""

    def __init__(self, expr: str, index: int, text: str) -> None:
        self.expr, self.index, self.text = expr, index, text
        self.low, self.high = _BOUNDS[index]
        self.items = text.split(",")

    def fail(self, problem: str) -> ScheduleError:
        """The error for `problem` in this field."""
        field = FIELD_NAMES[self.index]
        return ScheduleError(
            f"cron expression {self.expr!r}: {field} field {self.text!r}: {problem}"
        )

    def value(self, token: str) -> int:
        """One number or name of this field, checked against its range."""
        named = _NAMES.get(self.index, {}).get(token.upper())
        if named is not None:
            return named
        if not token.isascii() or not token.isdigit():
            raise self.fail(
                _misplaced(self.index, token.upper())
                or f"{token!r} is not a number{_NAME_HINTS.get(self.index, '')}"
            )
        number = int(token)
        if not self.low <= number <= self.high:
            raise self.fail(f"{number} is out of range {self.low}-{self.high}")
        return number

    def values(self, items: list[str] | None = None) -> set[int]:
        """The values of plain items (`*`, numbers, ranges, steps); default all items."""
        values: set[int] = set()
        for item in self.items if items is None else items:
            if not item:
                raise self.fail("empty list item")
            base, slash, step_text = item.partition("/")
            step = 1
            if slash:
                span = self.high - self.low + 1
                if not step_text.isascii() or not step_text.isdigit():
                    raise self.fail(f"step {step_text!r} is not a number")
                step = int(step_text)
                if not 1 <= step <= span:
                    raise self.fail(f"step {step} is out of range 1-{span}")
            if base == "*":
                first, last = self.low, self.high
            elif "-" in base:
                start_text, _, end_text = base.partition("-")
                if "-" in end_text or not start_text or not end_text:
                    raise self.fail(f"{base!r} is not a range like 1-5")
                first, last = self.value(start_text), self.value(end_text)
                if first > last:
                    raise self.fail(f"range {base} runs backwards; list both parts instead")
            else:
                # "5/10" means 5-max/10; a bare value without a step is just that value.
                first = self.value(base)
                last = self.high if slash else first
            values.update(range(first, last + 1, step))
        return values


def _misplaced(index: int, token: str) -> str | None:
    """Why a token holding L, W or # is no value of field `index`; None if it holds none."""
    if "#" in token:
        if index == DAY_OF_WEEK:
            return "# follows a single weekday, with no range or step: 5#3 is the third Friday"
        return "# (the nth weekday of the month, as in 5#3) belongs in day-of-week"
    if "W" in token:
        if index == DAY_OF_MONTH:
            return (
                "W follows a single day, with no range or step: 15W is the weekday nearest the 15th"
            )
        return "W (the nearest weekday, as in 15W or LW) belongs in day-of-month"
    if "L" in token:
        if index == DAY_OF_MONTH:
            return (
                "L stands alone (the last day) or as LW (the last weekday), with no range or step;"
                " 5L, the last Friday, belongs in day-of-week"
            )
        if index == DAY_OF_WEEK:
            return "L follows a single weekday, with no range or step: 5L is the last Friday"
        return "L (last) belongs in day-of-month (L, LW) or day-of-week (5L: the last Friday)"
    return None
