"""Concurrency policies, enforced with ephemeral ZooKeeper locks (one per job).

``allow`` takes no lock (no ZooKeeper write on the hot path). ``forbid`` skips a fire that
finds the lock held. ``queue_one`` lets one fire wait for the running attempt and skips
the others. ``replace`` cancels the running attempt and takes over. A lock disappears with
its holder's ZooKeeper session, so a dead worker never blocks a job for good; a holder
that may have lost its session stops its attempts first (``AttemptRunner.fence``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from common.messages import CancelMessage, RunMessage
from common.zk import Coordinator

WAIT_LIMIT = 24 * 3600.0


@dataclass(frozen=True)
class Admission:
    """Whether an attempt may start; `lock` is held (and must be released) when set."""

    admitted: bool
    lock: str | None = None
    reason: str | None = None
    duplicate: bool = False  # this very attempt holds the lock: a second copy of its message


def lock_name(job_id: int) -> str:
    """The name of a job's overlap lock."""
    return f"job-{job_id}"


def admit(coord: Coordinator, message: RunMessage, worker: str, stop: threading.Event,
          send_cancel: Callable[[CancelMessage], None], grace: float) -> Admission:
    """Apply the message's concurrency policy; blocks while a queue_one/replace fire waits."""
    if message.concurrency == "allow":
        return Admission(True)
    name = lock_name(message.job_id)
    mine = {"run_id": message.run_id, "attempt": message.attempt, "worker": worker}
    if coord.try_lock(name, mine):
        return Admission(True, name)
    holder = coord.holder(name) or {}
    if holder.get("run_id") == message.run_id and holder.get("attempt") == message.attempt:
        # A re-sent copy (a publish whose confirm was lost): the attempt is running under
        # the lock, so this copy is neither skipped nor run.
        return Admission(False, reason="this attempt is already running", duplicate=True)
    held_by = f"run {holder.get('run_id', '?')} on {holder.get('worker', '?')}"
    if message.concurrency == "forbid":
        return Admission(False, reason=f"overlap forbidden: {held_by} is still running")
    if message.concurrency == "replace":
        send_cancel(CancelMessage(run_id=holder.get("run_id"), job_id=None,
                                  reason=f"replaced by run {message.run_id}"))
        return _wait_and_take(coord, name, mine, stop, grace + 10.0, held_by)
    waiting = f"{name}-next"
    if not coord.try_lock(waiting, mine):
        return Admission(False, reason=f"overlap: {held_by} is running and one fire already "
                                       "waits for it")
    try:
        return _wait_and_take(coord, name, mine, stop, WAIT_LIMIT, held_by)
    finally:
        coord.release(waiting)


def _wait_and_take(coord: Coordinator, name: str, mine: dict[str, object],
                   stop: threading.Event, timeout: float, held_by: str) -> Admission:
    while coord.wait_free(name, timeout, stop):
        if coord.try_lock(name, mine):
            return Admission(True, name)
    return Admission(False, reason=f"overlap: gave up waiting for {held_by}")
