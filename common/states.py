"""The run state machine (pure).

::

    scheduled -> queued -> running -> succeeded
        |           \\         \\-> failed -> retrying -> queued (attempt + 1)
        |            \\         \\-> timed_out -> (like failed)
        |             \\         \\-> cancelled
        |              \\-> cancelled, skipped        failed, no attempts left -> dead
        \\-> skipped, cancelled

A run's position is ``(attempt, state)``. Status events may arrive replayed, duplicated or
out of order; :func:`apply_event` moves a run only forward and ignores everything else.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime

from common.errors import InvalidTransition


class RunState(enum.StrEnum):
    """Every state a run can be in."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    RETRYING = "retrying"
    CANCELLED = "cancelled"
    DEAD = "dead"
    SKIPPED = "skipped"


S = RunState
FINAL = frozenset({S.SUCCEEDED, S.CANCELLED, S.DEAD, S.SKIPPED})
_EDGES: dict[RunState, frozenset[RunState]] = {
    S.SCHEDULED: frozenset({S.QUEUED, S.SKIPPED, S.CANCELLED}),
    S.QUEUED: frozenset({S.RUNNING, S.SKIPPED, S.CANCELLED, S.DEAD}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.CANCELLED}),
    S.FAILED: frozenset({S.RETRYING, S.DEAD}),
    S.TIMED_OUT: frozenset({S.RETRYING, S.DEAD}),
    S.RETRYING: frozenset({S.CANCELLED}),
    S.SUCCEEDED: frozenset(),
    S.CANCELLED: frozenset(),
    S.DEAD: frozenset(),
    S.SKIPPED: frozenset(),
}
# States a fresh attempt can be reported in (the attempt number goes up on entering them).
_ATTEMPT_ENTRY = frozenset({S.QUEUED, S.RUNNING, S.SUCCEEDED, S.FAILED, S.TIMED_OUT,
                            S.CANCELLED, S.DEAD, S.SKIPPED})


def _closure(state: RunState) -> frozenset[RunState]:
    seen: set[RunState] = set()
    todo = list(_EDGES[state])
    while todo:
        nxt = todo.pop()
        if nxt not in seen:
            seen.add(nxt)
            todo.extend(_EDGES[nxt])
    return frozenset(seen)


_REACHABLE = {state: _closure(state) for state in RunState}


def can_move(current: RunState, target: RunState) -> bool:
    """True when `target` lies forward of `current` within one attempt."""
    return target in _REACHABLE[current]


def check_transition(current: RunState, target: RunState) -> None:
    """Raise InvalidTransition unless `current -> target` moves forward."""
    if not can_move(current, target):
        raise InvalidTransition(f"a run cannot move from {current} to {target}")


@dataclass(frozen=True)
class RunStatus:
    """What the database knows of one run."""

    attempt: int
    state: RunState
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str | None = None
    exit_code: int | None = None
    error: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class StatusEvent:
    """A worker's or leader's report on one attempt of one run."""

    attempt: int
    state: RunState
    at: datetime
    worker: str | None = None
    started_at: datetime | None = None
    exit_code: int | None = None
    error: str | None = None
    reason: str | None = None


def apply_event(current: RunStatus, event: StatusEvent) -> RunStatus | None:
    """The run after `event`, or None when the event is stale, duplicated or backward."""
    if current.state in FINAL:
        return None
    if event.attempt < current.attempt:
        return None
    if event.attempt == current.attempt:
        if not can_move(current.state, event.state):
            return None
    elif event.state not in _ATTEMPT_ENTRY:
        return None
    fresh_attempt = event.attempt > current.attempt
    started = event.started_at or (event.at if event.state is S.RUNNING else None)
    return replace(
        current,
        attempt=event.attempt,
        state=event.state,
        started_at=started or (None if fresh_attempt else current.started_at),
        finished_at=event.at if event.state in FINAL or event.state in (S.FAILED, S.TIMED_OUT)
        else (None if fresh_attempt else current.finished_at),
        worker=event.worker or (None if fresh_attempt else current.worker),
        exit_code=event.exit_code if event.exit_code is not None else (
            None if fresh_attempt else current.exit_code),
        error=event.error if event.error is not None else (
            None if fresh_attempt else current.error),
        reason=event.reason if event.reason is not None else (
            None if fresh_attempt else current.reason),
    )
