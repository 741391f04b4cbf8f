"""The Quartz day forms: L, LW and nW in day-of-month, dL and d#n in day-of-week.

Calendar facts the tables rely on: 2026-01-01 is a Thursday; 2026 is a common year,
2028, 2032 and 2000 are leap years, 2100 is not.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.errors import ScheduleError
from common.schedule import DstPolicy, fire_times, parse_cron
from common.schedule.cron_days import DayOfMonth, DayOfWeek


def fires(expr: str, start: str, count: int) -> list[str]:
    begin = datetime.fromisoformat(start).replace(tzinfo=UTC)
    return [f.strftime("%Y-%m-%d %H:%M") for f in fire_times(parse_cron(expr), begin, count)]


@pytest.mark.parametrize(
    ("expr", "start", "expected"),
    [
        # L: the last day, whatever the month's length.
        ("0 9 L * *", "2026-01-15", ["2026-01-31 09:00", "2026-02-28 09:00", "2026-03-31 09:00",
                                     "2026-04-30 09:00"]),
        ("0 0 L 2 *", "2027-03-01", ["2028-02-29 00:00", "2029-02-28 00:00"]),
        ("0 0 L 2 *", "1999-03-01", ["2000-02-29 00:00", "2001-02-28 00:00"]),
        ("0 0 L 2 *", "2099-03-01", ["2100-02-28 00:00", "2101-02-28 00:00"]),
        ("0 0 L 2,4 *", "2026-01-01", ["2026-02-28 00:00", "2026-04-30 00:00", "2027-02-28 00:00"]),
        ("0 9 L,15 * *", "2026-02-01", ["2026-02-15 09:00", "2026-02-28 09:00",
                                        "2026-03-15 09:00"]),
        ("30 0 12 L * *", "2026-01-01", ["2026-01-31 12:00", "2026-02-28 12:00"]),
        # LW: the last Monday-to-Friday; Jan 31 and Feb 28 2026 are Saturdays, May 31 a Sunday.
        ("0 9 LW * *", "2026-01-01", ["2026-01-30 09:00", "2026-02-27 09:00", "2026-03-31 09:00",
                                      "2026-04-30 09:00", "2026-05-29 09:00", "2026-06-30 09:00"]),
        # nW: Saturday -> Friday before, Sunday -> Monday after (Feb 15, Mar 15 2026 are
        # Sundays, Aug 15 a Saturday).
        ("0 0 15W * *", "2026-01-01", ["2026-01-15 00:00", "2026-02-16 00:00", "2026-03-16 00:00",
                                       "2026-04-15 00:00"]),
        ("0 0 15W 8 *", "2026-01-01", ["2026-08-14 00:00"]),
        # ... but never across a month boundary: Aug 1 2026 is a Saturday (Monday the 3rd,
        # not Friday July 31); May 31 a Sunday, Oct 31 a Saturday (Friday the 29th, 30th).
        ("0 0 1W * *", "2026-07-15", ["2026-08-03 00:00", "2026-09-01 00:00", "2026-10-01 00:00",
                                      "2026-11-02 00:00"]),
        ("0 0 31W * *", "2026-04-01", ["2026-05-29 00:00", "2026-07-31 00:00", "2026-08-31 00:00",
                                       "2026-10-30 00:00"]),
        # Aug 30 2026 is a Sunday, and the 31st exists: the Monday after.
        ("0 0 30W 8 *", "2026-01-01", ["2026-08-31 00:00"]),
        # Like a plain 30, 30W does not fire in February; 29W only in leap years, and on
        # Sunday Feb 29 2032 (the last day) it moves back to Friday the 27th.
        ("0 0 30W * *", "2026-01-01", ["2026-01-30 00:00", "2026-03-30 00:00", "2026-04-30 00:00"]),
        ("0 0 29W 2 *", "2026-01-01", ["2028-02-29 00:00", "2032-02-27 00:00", "2036-02-29 00:00"]),
        ("0 0 LW,15W * *", "2026-01-01", ["2026-01-15 00:00", "2026-01-30 00:00",
                                          "2026-02-16 00:00", "2026-02-27 00:00"]),
        # dL: the last given weekday; 7 and 0 are Sunday; names work.
        ("0 9 * * 5L", "2026-01-01", ["2026-01-30 09:00", "2026-02-27 09:00", "2026-03-27 09:00",
                                      "2026-04-24 09:00"]),
        ("0 0 * * FRIL", "2026-01-01", ["2026-01-30 00:00", "2026-02-27 00:00"]),
        ("0 0 * * 7L", "2026-01-01", ["2026-01-25 00:00", "2026-02-22 00:00"]),
        ("0 0 * * 0L", "2026-01-01", ["2026-01-25 00:00", "2026-02-22 00:00"]),
        # d#n: the nth given weekday.
        ("0 9 * * 5#3", "2026-01-01", ["2026-01-16 09:00", "2026-02-20 09:00", "2026-03-20 09:00",
                                       "2026-04-17 09:00"]),
        ("0 0 * * fri#3", "2026-01-01", ["2026-01-16 00:00", "2026-02-20 00:00"]),
        ("0 0 * * 0#1,7#2", "2026-01-01", ["2026-01-04 00:00", "2026-01-11 00:00",
                                           "2026-02-01 00:00"]),
        ("0 9 * * 1#1,5L", "2026-01-01", ["2026-01-05 09:00", "2026-01-30 09:00",
                                          "2026-02-02 09:00", "2026-02-27 09:00"]),
        # #5 skips the months with only four: 2026 has five Fridays in Jan, May, Jul, Oct.
        ("0 0 * * 5#5", "2026-01-01", ["2026-01-30 00:00", "2026-05-29 00:00", "2026-07-31 00:00",
                                       "2026-10-30 00:00"]),
        # A fifth Sunday in February needs a leap year starting on a Sunday.
        ("0 0 * 2 0#5", "2026-01-01", ["2032-02-29 00:00", "2060-02-29 00:00"]),
        # Both day fields restricted (neither starts with '*'): a day matches when EITHER
        # does (Debian's rule, as cronsim): the last day or any Friday ...
        ("0 9 L * 5", "2026-01-20", ["2026-01-23 09:00", "2026-01-30 09:00", "2026-01-31 09:00",
                                     "2026-02-06 09:00"]),
        ("0 9 1 * 5#3", "2026-01-01", ["2026-01-01 09:00", "2026-01-16 09:00", "2026-02-01 09:00",
                                       "2026-02-20 09:00"]),
        ("0 9 LW * 1", "2026-01-24", ["2026-01-26 09:00", "2026-01-30 09:00", "2026-02-02 09:00",
                                      "2026-02-09 09:00"]),
        # ... one starting with '*': BOTH must match: last Fridays on odd days, last days
        # on a weekend.
        ("0 9 */2 * 5L", "2026-01-01", ["2026-02-27 09:00", "2026-03-27 09:00", "2026-05-29 09:00",
                                        "2026-07-31 09:00"]),
        ("0 9 L * */6", "2026-01-01", ["2026-01-31 09:00", "2026-02-28 09:00", "2026-05-31 09:00",
                                       "2026-10-31 09:00"]),
    ],
)  # fmt: skip
def test_quartz_day_forms_fire_on_the_documented_days(
    expr: str, start: str, expected: list[str]
) -> None:
    assert fires(expr, start, len(expected)) == expected


BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("expr", "dst", "start", "expected"),
    [
        # The EU changes clocks on the last Sunday of March and October at 01:00 UTC.
        ("30 2 * 3 0L", DstPolicy("shift", "once"), "2026-03-01T00:00+01:00",
         ["2026-03-29T03:00:00+02:00", "2027-03-28T03:00:00+02:00"]),
        ("30 2 * 10 SUNL", DstPolicy("shift", "twice"), "2026-10-01T00:00+02:00",
         ["2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00", "2027-10-31T02:30:00+02:00"]),
        ("30 2 * 10 SUNL", DstPolicy("shift", "once"), "2026-10-01T00:00+02:00",
         ["2026-10-25T02:30:00+02:00", "2027-10-31T02:30:00+02:00"]),
        ("30 2 L 3 *", DstPolicy("skip", "once"), "2026-03-01T00:00+01:00",
         ["2026-03-31T02:30:00+02:00", "2027-03-31T02:30:00+02:00"]),
    ],
)  # fmt: skip
def test_day_forms_fire_by_the_dst_policy_on_dst_days(
    expr: str, dst: DstPolicy, start: str, expected: list[str]
) -> None:
    cron = parse_cron(expr, "Europe/Berlin", dst)
    begin = datetime.fromisoformat(start)
    found = fire_times(cron, begin, len(expected))
    assert [f.astimezone(BERLIN).isoformat() for f in found] == expected


def test_a_time_the_last_sunday_of_march_always_skips_never_fires_under_skip() -> None:
    cron = parse_cron("30 2 * 3 0L", "Europe/Berlin", DstPolicy("skip", "once"))
    assert cron.first_fire(datetime(2026, 3, 1, tzinfo=UTC)) is None


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 0 32W * *", "day-of-month field '32W': 32 is out of range 1-31"),
        ("0 0 0W * *", "day-of-month field '0W': 0 is out of range 1-31"),
        ("0 0 W * *", "day-of-month field 'W': W follows a single day, with no range or step"),
        ("0 0 1-5W * *", "day-of-month field '1-5W': W follows a single day"),
        ("0 0 * * 8#1", "day-of-week field '8#1': 8 is out of range 0-7"),
        ("0 0 * * 8L", "day-of-week field '8L': 8 is out of range 0-7"),
        ("0 0 * * 5#6", "day-of-week field '5#6': #6 is out of range 1-5: no month has more"),
        ("0 0 * * 5#0", "day-of-week field '5#0': #0 is out of range 1-5"),
        ("0 0 * * 5#x", "day-of-week field '5#x': 'x' after # is not a number"),
        ("0 0 * * 1-5#2", "day-of-week field '1-5#2': # follows a single weekday, with no range"),
        ("0 0 * * 1-5L", "day-of-week field '1-5L': L follows a single weekday, with no range"),
        ("0 0 * * L", "day-of-week field 'L': L follows a single weekday"),
        ("0 0 * * 15W", "day-of-week field '15W': W (the nearest weekday, as in 15W or LW)"
                        " belongs in day-of-month"),
        ("0 0 5#3 * *", "day-of-month field '5#3': # (the nth weekday of the month, as in 5#3)"
                        " belongs in day-of-week"),
        ("0 0 5L * *", "day-of-month field '5L': L stands alone (the last day) or as LW"),
        ("0 0 L-3 * *", "day-of-month field 'L-3': L stands alone"),
        ("0 0 L/2 * *", "day-of-month field 'L/2': L stands alone"),
        ("L * * * *", "minute field 'L': L (last) belongs in day-of-month (L, LW) or day-of-week"),
        ("0 L * * *", "hour field 'L': L (last) belongs in day-of-month"),
        ("0 0 * L *", "month field 'L': L (last) belongs in day-of-month"),
        ("0 0 30W 2 *", "'0 0 30W 2 *' can never fire: no month in month field '2' has a day"
                        " that matches day-of-month field '30W' and day-of-week field '*'"),
        # Days 1, 16, 31 are never the second of a weekday (days 8-14).
        ("0 0 */15 * 5#2", "can never fire"),
        # The last weekday is never a Sunday or Saturday.
        ("0 0 LW * */6", "can never fire"),
    ],
)  # fmt: skip
def test_bad_day_forms_are_rejected_naming_the_problem(expr: str, message: str) -> None:
    with pytest.raises(ScheduleError) as error:
        parse_cron(expr)
    assert message in str(error.value)


# --- nW and LW against a definition by search ------------------------------------------


def _nearest_weekday_by_search(year: int, month: int, target: int) -> int | None:
    """The Monday-to-Friday day of the month closest to `target` (the month's own only)."""
    length = calendar.monthrange(year, month)[1]
    if target > length:
        return None
    weekdays = [d for d in range(1, length + 1) if date(year, month, d).weekday() < 5]
    return min(weekdays, key=lambda d: abs(d - target))


@given(
    year=st.integers(1900, 2400),
    month=st.integers(1, 12),
    targets=st.frozensets(st.integers(1, 31), max_size=3),
    last_weekday=st.booleans(),
)
def test_nearest_weekday_matches_the_closest_weekday_in_the_month(
    year: int, month: int, targets: frozenset[int], last_weekday: bool
) -> None:
    field = DayOfMonth(frozenset(), last_weekday=last_weekday, nearest_weekday=targets)
    length = calendar.monthrange(year, month)[1]
    wanted = {_nearest_weekday_by_search(year, month, t) for t in targets} - {None}
    if last_weekday:
        wanted.add(_nearest_weekday_by_search(year, month, length))
    cron_weekday = {d: (date(year, month, d).weekday() + 1) % 7 for d in range(1, length + 1)}
    found = {d for d in range(1, length + 1) if field.matches(d, length, cron_weekday[d])}
    assert found == wanted


@given(
    year=st.integers(1900, 2400),
    month=st.integers(1, 12),
    weekday=st.integers(0, 6),
    count=st.integers(1, 5),
)
def test_last_and_nth_weekday_match_by_counting_the_month(
    year: int, month: int, weekday: int, count: int
) -> None:
    length = calendar.monthrange(year, month)[1]
    days = [d for d in range(1, length + 1) if (date(year, month, d).weekday() + 1) % 7 == weekday]
    last, nth = (
        DayOfWeek(frozenset(), last=frozenset({weekday})),
        DayOfWeek(frozenset(), nth=frozenset({(weekday, count)})),
    )
    assert [d for d in days if last.matches(d, length, weekday)] == days[-1:]
    assert [d for d in days if nth.matches(d, length, weekday)] == days[count - 1 : count]
