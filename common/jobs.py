"""Job definitions: validation of what a user submits, and the schedule of a stored job.

Pure: the caller passes `now`. Every problem raises InvalidInput naming the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from common.errors import InvalidInput
from common.jobspec import JOB_TYPES, validate_payload
from common.schedule import DstPolicy, Schedule, parse_schedule
from common.schedule.backoff import Backoff

CONCURRENCY = ("allow", "forbid", "queue_one", "replace")
MISFIRE = ("fire_once", "fire_all", "skip")
JOB_STATES = ("active", "paused", "cancelled", "completed")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LONGEST_S = 100 * 365.25 * 86400
POOL_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")


@dataclass(frozen=True)
class JobSpec:
    """A validated job definition, ready to store."""

    name: str
    job_type: str
    payload: dict[str, Any]
    schedule_kind: str
    schedule_expr: str
    time_zone: str = "UTC"
    dst_nonexistent: str = "shift"
    dst_ambiguous: str = "once"
    priority: int = 5
    pool: str = "default"
    max_attempts: int = 1
    backoff_base_s: float = 1.0
    backoff_factor: float = 2.0
    backoff_cap_s: float = 600.0
    backoff_jitter: float = 0.0
    timeout_s: float | None = None
    concurrency: str = "allow"
    misfire: str = "fire_once"
    misfire_grace_s: float = 60.0
    start_deadline_s: float | None = None
    jitter_s: float = 0.0
    pause_after_failures: int | None = None
    tenant_id: str = "default"
    owner: str = ""
    idempotency_key: str | None = None
    allow_past: bool = field(default=False, compare=False)


def validate(spec: JobSpec, *, now: datetime) -> tuple[JobSpec, datetime | None]:
    """Check every field of `spec`; returns the normalised spec and its first fire time."""
    if not spec.name.strip() or len(spec.name) > 200:
        raise InvalidInput("name: must be 1 to 200 characters")
    if spec.job_type not in JOB_TYPES:
        raise InvalidInput(f"job type: must be one of {', '.join(JOB_TYPES)}, "
                           f"not {spec.job_type!r}")
    payload = validate_payload(spec.job_type, spec.payload)
    _choice("concurrency", spec.concurrency, CONCURRENCY)
    _choice("misfire", spec.misfire, MISFIRE)
    _range("priority", spec.priority, 0, 9)
    _range("max attempts", spec.max_attempts, 1, 100)
    if not spec.pool or not set(spec.pool) <= POOL_CHARS or len(spec.pool) > 64:
        raise InvalidInput(f"pool: use lower-case letters, digits, '-' and '_' ({spec.pool!r})")
    for label, value, positive in (("timeout", spec.timeout_s, True),
                                   ("start deadline", spec.start_deadline_s, True),
                                   ("misfire grace", spec.misfire_grace_s, False),
                                   ("jitter", spec.jitter_s, False),
                                   ("backoff base", spec.backoff_base_s, True),
                                   ("backoff cap", spec.backoff_cap_s, True)):
        if value is None:
            continue
        low_ok = value > 0 if positive else value >= 0
        if not (math.isfinite(value) and low_ok and value <= LONGEST_S):
            bound = "positive" if positive else "0 or more"
            raise InvalidInput(f"{label}: must be {bound} and at most 100 years "
                               f"(in seconds), not {value}")
    if spec.pause_after_failures is not None and spec.pause_after_failures < 1:
        raise InvalidInput("pause after failures: must be at least 1")
    backoff_of(spec)  # raises on a bad backoff
    schedule = parse_schedule(spec.schedule_expr, kind=spec.schedule_kind or None,
                              tz=spec.time_zone, dst=_dst(spec.dst_nonexistent, spec.dst_ambiguous),
                              now=now, allow_past=spec.allow_past)
    normal = JobSpec(**{**spec.__dict__, "payload": payload, "schedule_kind": schedule.kind})
    first = schedule.first_fire(now)
    if first is not None and first < now:
        first = now  # a permitted past `at` time fires now
    return normal, first


def backoff_of(spec: Any) -> Backoff:
    """The Backoff of a job spec or stored job row (anything with the backoff_* fields)."""
    return Backoff(base=timedelta(seconds=_get(spec, "backoff_base_s")),
                   factor=float(_get(spec, "backoff_factor")),
                   cap=timedelta(seconds=_get(spec, "backoff_cap_s")),
                   jitter=float(_get(spec, "backoff_jitter")))


def schedule_of(job: dict[str, Any]) -> Schedule:
    """The schedule of a stored job row (re-parsed; the row was validated when stored)."""
    kind = job["schedule_kind"]
    # Only immediate and interval schedules depend on their anchor; keying the others
    # without it lets thousands of jobs with the same cron share one parsed schedule.
    anchor = job["anchor_at"] if kind in ("now", "every") else _EPOCH
    return _cached_schedule(kind, job["schedule_expr"], job["time_zone"],
                            job["dst_nonexistent"], job["dst_ambiguous"], anchor)


@lru_cache(maxsize=4096)
def _cached_schedule(kind: str, expr: str, tz: str, nonexistent: str, ambiguous: str,
                     anchor: datetime) -> Schedule:
    return parse_schedule(expr, kind=kind, tz=tz, dst=_dst(nonexistent, ambiguous), now=anchor,
                          allow_past=True)


def _dst(nonexistent: str, ambiguous: str) -> DstPolicy:
    _choice("nonexistent", nonexistent, ("shift", "skip"))
    _choice("ambiguous", ambiguous, ("once", "twice"))
    return DstPolicy(nonexistent, ambiguous)  # type: ignore[arg-type]


def _get(obj: Any, name: str) -> Any:
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def _choice(label: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidInput(f"{label}: must be one of {', '.join(allowed)}, not {value!r}")


def _range(label: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise InvalidInput(f"{label}: must be between {low} and {high}, not {value}")
