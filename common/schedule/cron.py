"""Cron schedules: crontab(5) fields matched in a job's local wall-clock time.

Syntax, as Debian's cron reads it:

- 5 fields `minute hour day-of-month month day-of-week`, or 6 fields with an optional
  SECONDS field FIRST (the Quartz/Spring position): `second minute hour dom month dow`.
- `*`, lists `1,5`, ranges `1-5`, steps `*/15` and `1-30/5`, `5/10` meaning `5-max/10`;
  a range with equal ends is that one value (`23-23` is 23 only, `5-5/10` is 5 only).
- Month names JAN-DEC and day names SUN-SAT in any case; day-of-week 0 and 7 are Sunday.
- Macros @yearly @annually @monthly @weekly @daily @midnight @hourly.
- Quartz day forms (`common.schedule.cron_days`): day-of-month `L` (last day), `LW` (last
  weekday), `15W` (the weekday nearest the 15th, never in another month; no fire in a
  month without that day); day-of-week `5L` (last Friday), `5#3` (third Friday; `#5`
  does not fire in a month with four). They are list items of their own: `L,15` and
  `1#1,5L` work, ranges and steps of them do not.
- Day rule (Debian's, as cronsim): when both day-of-month and day-of-week are restricted
  (neither starts with `*`) a day matches if EITHER matches; otherwise both must match.
  So `0 9 L * 5` fires on the last day and on every Friday, `0 9 */2 * 5L` on the last
  Friday when it falls on an odd day.
- An expression that can never fire (`0 0 30 2 *`, `0 0 LW * */6`) is rejected when
  parsed. Any other one fires in every 400-year Gregorian cycle, which bounds every search.

Time zones and DST (`DstPolicy`): a local time skipped by a spring-forward gap fires once
at the instant the gap ends ("shift", the default; several matches in one gap, and a
regular match at the gap's end, make one fire) or not at all ("skip"). A local time
repeated by a fall-back fires at its first occurrence ("once", the default) or at both
("twice"). Debian's cron applies shift+once to jobs with fixed minute and hour fields
and skip+twice to the others; Zeitplan makes the choice explicit per job instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar
from zoneinfo import ZoneInfo

from common.schedule.base import (
    LAST_YEAR,
    ONE_MICROSECOND,
    ONE_SECOND,
    DstPolicy,
    load_zone,
    require_aware,
)
from common.schedule.cron_fields import CronFields, parse_cron_fields
from common.schedule.tz import resolve, transitions, wall_of

_LATEST = datetime(LAST_YEAR, 1, 1, tzinfo=UTC)
_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Cron:
    """A cron schedule in an IANA time zone; build it with `parse_cron`."""

    expr: str
    tz: str
    dst: DstPolicy
    fields: CronFields
    kind: ClassVar[str] = "cron"

    @property
    def zone(self) -> ZoneInfo:
        """The job's time zone."""
        return ZoneInfo(self.tz)

    def describe(self) -> str:
        """E.g. "cron '*/5 * * * *' in Europe/Berlin"."""
        return f"cron {self.expr!r} in {self.tz}{self.dst.describe()}"

    def first_fire(self, start: datetime) -> datetime | None:
        """Earliest fire at or after `start`."""
        return self.next_after(require_aware(start, "start") - ONE_MICROSECOND)

    def next_after(self, after: datetime) -> datetime | None:
        """Earliest fire strictly after `after`."""
        if require_aware(after, "after") >= _LATEST:
            return None
        zone = self.zone
        local = after.astimezone(zone)
        wall = local.replace(tzinfo=None, microsecond=0)
        start = wall + ONE_SECOND
        here = resolve(wall, zone)
        if here.second is not None:
            assert here.first is not None and here.transition is not None
            # `after` falls in a repeated hour: the first pass runs to wall time `end`,
            # then the clocks go back to `begin` for the second pass.
            begin = wall_of(here.transition, zone)
            end = begin + (here.second - here.first)
            if local.fold == 0:
                match = self.fields.next_match(start)
                if match is not None and match < end:
                    return resolve(match, zone).first
            if self.dst.ambiguous == "twice":
                match = self.fields.next_match(start if local.fold else begin)
                if match is not None and match < end:
                    return resolve(match, zone).second
            start = end
        return self._first_from_wall(start, zone)

    def count_between(self, start: datetime, end: datetime) -> int:
        """Number of fires f with start <= f < end, counted per constant-offset span."""
        require_aware(start, "start")
        if require_aware(end, "end") <= start:
            return 0
        zone = self.zone
        # Begin a day early so that a fold or gap just before `start` is seen.
        span_start = start - _DAY
        offset = span_start.astimezone(zone).utcoffset()
        assert offset is not None
        not_before: datetime | None = None  # "once": second-pass walls below this do not fire
        total = 0
        for change in [*transitions(zone, span_start, end), None]:
            span_end = end if change is None else change.at
            lo, hi = max(span_start, start), min(span_end, end)
            if lo < hi:
                wall_lo = _naive(lo + offset)
                if not_before is not None:
                    wall_lo = max(wall_lo, not_before)
                total += self.fields.count_matches(wall_lo, _naive(hi + offset))
            if change is None:
                break
            wall_before = _naive(change.at + change.before)
            wall_after = _naive(change.at + change.after)
            folds = change.after < change.before
            # A fold repeats walls [wall_after, wall_before); a gap skips [wall_before, wall_after).
            not_before = wall_before if folds and self.dst.ambiguous == "once" else None
            if (
                not folds
                and self.dst.nonexistent == "shift"
                and start <= change.at < end
                and self.fields.count_matches(wall_before, wall_after) > 0
                and self.fields.count_matches(wall_after, wall_after + ONE_SECOND) == 0
            ):
                total += 1
            span_start, offset = change.at, change.after
        return total

    def _first_from_wall(self, start: datetime, zone: ZoneInfo) -> datetime | None:
        """Earliest fire at the first occurrence of a matching wall time >= `start`."""
        while True:
            match = self.fields.next_match(start)
            if match is None:
                return None
            found = resolve(match, zone)
            if found.first is not None:
                return found.first
            assert found.transition is not None
            if self.dst.nonexistent == "shift":
                return found.transition
            start = wall_of(found.transition, zone)


def parse_cron(expr: str, tz: str = "UTC", dst: DstPolicy | None = None) -> Cron:
    """Parse a cron expression (see the module docstring) in IANA zone `tz`."""
    load_zone(tz)
    text, fields = parse_cron_fields(expr)
    return Cron(expr=text, tz=tz, dst=dst or DstPolicy(), fields=fields)


def _naive(value: datetime) -> datetime:
    return value.replace(tzinfo=None)
