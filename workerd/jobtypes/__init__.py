"""Job types: how a worker executes one attempt of a job.

The worker loop builds a JobContext per attempt and calls `run` on the job type named by
the job; `run` never raises for anything the job does, it returns an Outcome. The context's
`emit` may be called from several threads, one call at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from common.errors import InvalidInput
from common.jobspec import validate_payload
from workerd.jobtypes.strays import Stray
from workerd.output import DEFAULT_OUTPUT_LIMIT

POLL_INTERVAL = 0.05  # seconds between checks for a cancel or a deadline

State = Literal["succeeded", "failed", "timed_out", "cancelled"]
Stop = Literal["cancelled", "timed_out"]


@dataclass(frozen=True)
class RunKey:
    """Identifies one attempt of one run; the same attempt always gets the same key."""

    run_id: int
    job_id: int
    scheduled_for: datetime
    attempt: int

    def __post_init__(self) -> None:
        if self.scheduled_for.utcoffset() is None:
            raise InvalidInput("RunKey.scheduled_for must be timezone-aware")

    @property
    def scheduled_for_utc(self) -> str:
        """The fire time in UTC ISO 8601, for example "2024-05-01T12:00:00Z"."""
        return self.scheduled_for.astimezone(UTC).isoformat().replace("+00:00", "Z")

    @property
    def idempotency_key(self) -> str:
        """A key a job's target can use to ignore a repeated attempt: "job:fire time:attempt"."""
        return f"{self.job_id}:{self.scheduled_for_utc}:{self.attempt}"


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended; `error` is short human text such as "exit status 3";
    `leftover` is the job's helper thread when it is still running (see strays.py)."""

    state: State
    exit_code: int | None = None
    error: str | None = None
    leftover: Stray | None = field(default=None, compare=False)


@dataclass
class JobContext:
    """Everything one attempt needs from the worker.

    `output_limit` is the number of bytes kept per stream (stdout, stderr); past it one
    truncation notice is emitted and the rest is dropped.
    """

    key: RunKey
    payload: Mapping[str, Any]
    timeout: float | None
    cancel: threading.Event
    emit: Callable[[str, bytes], None]
    sql_dsns: Mapping[str, str]  # the DSNs this job's pool may name (`sql.pools`)
    kill_grace: float = 5.0
    output_limit: int = DEFAULT_OUTPUT_LIMIT
    pool: str = "default"


class JobType(Protocol):
    """Runs one attempt of a job and says how it ended."""

    def run(self, ctx: JobContext) -> Outcome: ...


def load_job_types() -> dict[str, JobType]:
    """The built-in job types by the names jobs use: shell, http, sql and python."""
    # Imported here: the job type modules import this package for its interface.
    from workerd.jobtypes.http_call import HttpJob
    from workerd.jobtypes.python_plugin import PythonPluginJob
    from workerd.jobtypes.shell import ShellJob
    from workerd.jobtypes.sql import SqlJob

    return {"shell": ShellJob(), "http": HttpJob(), "sql": SqlJob(), "python": PythonPluginJob()}


def checked_payload(job_type: str, ctx: JobContext) -> dict[str, Any] | Outcome:
    """The normalised payload, or a failed Outcome saying why the payload cannot run."""
    try:
        return validate_payload(job_type, ctx.payload)
    except InvalidInput as exc:
        return Outcome("failed", error=str(exc))


class Deadline:
    """The moment an attempt's timeout runs out, on the monotonic clock."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._at = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left (never negative), or None without a limit."""
        return None if self._at is None else max(0.0, self._at - time.monotonic())

    def expired(self) -> bool:
        """Whether the timeout has run out."""
        return self._at is not None and time.monotonic() >= self._at


def stop_reason(ctx: JobContext, deadline: Deadline) -> Stop | None:
    """Why the attempt must stop now, if it must."""
    if ctx.cancel.is_set():
        return "cancelled"
    if deadline.expired():
        return "timed_out"
    return None


class Waitable(Protocol):
    """threading.Event or workerd.latch.Latch."""

    def wait(self, timeout: float) -> bool: ...


def wait_until_done(done: Waitable, ctx: JobContext, deadline: Deadline) -> Stop | None:
    """Wait for `done`; return early with the reason when the attempt is cancelled or times out."""
    while not done.wait(POLL_INTERVAL):
        reason = stop_reason(ctx, deadline)
        if reason is not None:
            return reason
    return None


def stopped(reason: Stop, deadline: Deadline, exit_code: int | None = None) -> Outcome:
    """The Outcome of an attempt stopped by a cancel or its timeout."""
    if reason == "cancelled":
        return Outcome("cancelled", exit_code, "cancelled")
    return Outcome("timed_out", exit_code, f"timed out after {deadline.timeout:g} s")
