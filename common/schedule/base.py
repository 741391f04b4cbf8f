"""Shared vocabulary of the scheduling core: the Schedule interface, DST policy, zones."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common.errors import ScheduleError

# Searches stop here: a wall time near datetime.max cannot be shifted by a UTC offset.
LAST_YEAR = 9998
ONE_SECOND = timedelta(seconds=1)
ONE_MICROSECOND = timedelta(microseconds=1)

NonexistentPolicy = Literal["shift", "skip"]
AmbiguousPolicy = Literal["once", "twice"]


@dataclass(frozen=True)
class DstPolicy:
    """How local wall-clock times that a DST change skips or repeats are fired.

    nonexistent: "shift" (default) fires a skipped time once, at the instant the gap
    ends; "skip" does not fire it. ambiguous: "once" (default) fires a repeated time at
    its first occurrence; "twice" fires it at both.
    """

    nonexistent: NonexistentPolicy = "shift"
    ambiguous: AmbiguousPolicy = "once"

    def __post_init__(self) -> None:
        if self.nonexistent not in ("shift", "skip"):
            raise ScheduleError(
                f"nonexistent-time policy {self.nonexistent!r} is not one of 'shift', 'skip'"
            )
        if self.ambiguous not in ("once", "twice"):
            raise ScheduleError(
                f"ambiguous-time policy {self.ambiguous!r} is not one of 'once', 'twice'"
            )

    def describe(self) -> str:
        """Text for descriptions; empty for the default policy."""
        if self == DstPolicy():
            return ""
        return f" (nonexistent: {self.nonexistent}, ambiguous: {self.ambiguous})"


class Schedule(Protocol):
    """When a job fires. Implemented by Immediate, Once, Cron and Interval."""

    @property
    def kind(self) -> str:
        """One of "now", "at", "cron", "every"."""
        ...

    def first_fire(self, start: datetime) -> datetime | None:
        """Earliest fire at or after `start` (aware UTC), or None if there is none."""
        ...

    def next_after(self, after: datetime) -> datetime | None:
        """Earliest fire strictly after `after` (aware UTC), or None if there is none."""
        ...

    def count_between(self, start: datetime, end: datetime) -> int:
        """Number of fires f with start <= f < end, without listing them."""
        ...

    def describe(self) -> str:
        """Canonical text, e.g. "cron '*/5 * * * *' in Europe/Berlin"."""
        ...


def require_aware(value: datetime, name: str) -> datetime:
    """Return `value` unchanged if it is timezone-aware; raise ScheduleError if naive."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ScheduleError(f"{name} {value.isoformat()} has no time zone; pass an aware datetime")
    return value


def load_zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`, or ScheduleError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"unknown time zone {name!r}") from None
