"""One entry point for every schedule expression, and listing fire times."""

from __future__ import annotations

import re
from datetime import datetime

from common.errors import ScheduleError
from common.schedule.base import DstPolicy, Schedule, load_zone, require_aware
from common.schedule.cron import parse_cron
from common.schedule.interval import parse_interval
from common.schedule.once import parse_immediate, parse_once

KINDS = ("now", "at", "cron", "every")
_DURATION = re.compile(r"-?P[\dT]", re.IGNORECASE)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def detect_kind(expr: str) -> str:
    """Guess the kind of `expr`: "now", "every" (also ISO durations), "at" (ISO times), "cron"."""
    text = expr.strip()
    if text.lower() == "now":
        return "now"
    if text.lower().startswith("every") or _DURATION.match(text):
        return "every"
    if _DATE.match(text):
        return "at"
    return "cron"


def parse_schedule(
    expr: str,
    *,
    kind: str | None = None,
    tz: str = "UTC",
    dst: DstPolicy = DstPolicy(),  # noqa: B008 - frozen, so a shared default is safe
    now: datetime,
    allow_past: bool = False,
) -> Schedule:
    """Parse any schedule expression; `kind` None detects it (see `detect_kind`).

    `now` is the parse time: `now` schedules fire at it, intervals are anchored at it,
    and one-off times before it are refused unless `allow_past`.
    """
    require_aware(now, "now")
    load_zone(tz)
    kind = detect_kind(expr) if kind is None else kind
    if kind == "now":
        return parse_immediate(expr, now)
    if kind == "at":
        return parse_once(expr, tz=tz, dst=dst, now=now, allow_past=allow_past)
    if kind == "cron":
        return parse_cron(expr, tz, dst)
    if kind == "every":
        return parse_interval(expr, anchor=now, tz=tz)
    raise ScheduleError(f"unknown schedule kind {kind!r}; expected one of {', '.join(KINDS)}")


def fire_times(schedule: Schedule, start: datetime, count: int) -> list[datetime]:
    """The next `count` fires at or after `start` (fewer if the schedule ends)."""
    if count < 0:
        raise ScheduleError(f"count must not be negative, got {count}")
    fires: list[datetime] = []
    fire = schedule.first_fire(start)
    while fire is not None and len(fires) < count:
        fires.append(fire)
        fire = schedule.next_after(fire)
    return fires
