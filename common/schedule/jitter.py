"""Deterministic spreading of start times: the same inputs always give the same offset."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from common.errors import ScheduleError
from common.schedule.base import ONE_MICROSECOND, require_aware


def stable_fraction(*parts: object) -> float:
    """A number in [0, 1) derived from `parts` with SHA-256, stable across processes."""
    key = "\x1f".join(str(part) for part in parts).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64


def jitter(job_id: int, fire_time: datetime, max_jitter: timedelta) -> timedelta:
    """Offset in [0, max_jitter) for one fire of one job; every leader computes the same."""
    instant = require_aware(fire_time, "fire_time").astimezone(UTC)
    if max_jitter < timedelta(0):
        raise ScheduleError(f"max jitter must not be negative, got {max_jitter}")
    steps = max_jitter // ONE_MICROSECOND
    if steps == 0:
        return timedelta(0)
    return ONE_MICROSECOND * int(stable_fraction(job_id, instant.isoformat()) * steps)
