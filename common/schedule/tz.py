"""Mapping local wall-clock times onto instants across DST changes.

zoneinfo exposes no list of transitions, so transitions are located by bisection between
two instants whose UTC offsets differ. tzdata transitions fall on whole seconds, and a
zone changes its offset at most once in any day (checked chunk by chunk below).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Wall:
    """The instants of one local wall-clock time.

    A regular time has `first` only; a repeated (ambiguous) time has `first` and
    `second`; a skipped (nonexistent) time has neither, and `transition` is the instant
    its gap ends. For repeated times `transition` is the instant the clocks go back.
    """

    first: datetime | None
    second: datetime | None = None
    transition: datetime | None = None


@dataclass(frozen=True)
class Transition:
    """A change of UTC offset at instant `at`."""

    at: datetime
    before: timedelta
    after: timedelta


def offset_at(instant: datetime, zone: ZoneInfo) -> timedelta:
    """UTC offset of `zone` at the aware `instant`."""
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def wall_of(instant: datetime, zone: ZoneInfo) -> datetime:
    """Naive local wall-clock time of the aware `instant` in `zone`."""
    return instant.astimezone(zone).replace(tzinfo=None)


def resolve(wall: datetime, zone: ZoneInfo) -> Wall:
    """Instants (aware UTC) at which the naive local time `wall` occurs in `zone`."""
    early = wall.replace(tzinfo=zone, fold=0).utcoffset()
    late = wall.replace(tzinfo=zone, fold=1).utcoffset()
    assert early is not None and late is not None
    if early == late:
        return Wall(first=(wall - early).replace(tzinfo=UTC))
    # PEP 495: fold=0 takes the offset in force before the transition, fold=1 the one after.
    first = (wall - early).replace(tzinfo=UTC)
    second = (wall - late).replace(tzinfo=UTC)
    if early > late:
        return Wall(first=first, second=second, transition=_bisect(first, second, zone))
    return Wall(first=None, transition=_bisect(second, first, zone))


def transitions(zone: ZoneInfo, start: datetime, end: datetime) -> list[Transition]:
    """Offset changes of `zone` in (start, end], ascending."""
    found: list[Transition] = []
    lo, lo_offset = start, offset_at(start, zone)
    while lo < end:
        hi = min(lo + _DAY, end)
        hi_offset = offset_at(hi, zone)
        if hi_offset != lo_offset:
            found.append(Transition(_bisect(lo, hi, zone), lo_offset, hi_offset))
        lo, lo_offset = hi, hi_offset
    return found


def _bisect(lo: datetime, hi: datetime, zone: ZoneInfo) -> datetime:
    """The instant in (lo, hi] at which the offset of `lo` changes to that of `hi`."""
    target = offset_at(hi, zone)
    lo_s, hi_s = math.floor(lo.timestamp()), math.ceil(hi.timestamp())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if offset_at(datetime.fromtimestamp(mid, UTC), zone) == target:
            hi_s = mid
        else:
            lo_s = mid
    return datetime.fromtimestamp(hi_s, UTC)
