"""The leader's pure decisions: which fire times to record, and the messages to publish."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from common.db.dispatch import NewRun
from common.jobs import schedule_of
from common.messages import RunMessage
from common.schedule import MisfirePolicy, jitter, plan_fires


@dataclass(frozen=True)
class Materialisation:
    """Runs to record and each job's new fire cursor."""

    runs: list[NewRun]
    cursors: list[tuple[int, datetime | None]]
    unrecorded_skips: int  # skipped fires without a row of their own (in a summary row)


def materialise(jobs: Iterable[dict[str, Any]], *, now: datetime,
                horizon: datetime) -> Materialisation:
    """Plan every due job's fire times up to `horizon` under its misfire policy."""
    runs: list[NewRun] = []
    cursors: list[tuple[int, datetime | None]] = []
    unrecorded = 0
    for job in jobs:
        plan = plan_fires(
            schedule_of(job), job["next_fire_at"], now=now, horizon=horizon,
            misfire=MisfirePolicy(mode=job["misfire"],
                                  grace=timedelta(seconds=job["misfire_grace_s"])))
        spread = timedelta(seconds=job["jitter_s"])
        for fire in plan.fire:
            due = fire + jitter(job["id"], fire, spread) if job["jitter_s"] else fire
            runs.append(NewRun(job["id"], fire, due, job["priority"], job["pool"]))
        for fire, reason in plan.skipped:
            runs.append(NewRun(job["id"], fire, fire, job["priority"], job["pool"],
                               state="skipped", reason=reason))
        unrecorded += plan.skipped_unrecorded
        cursors.append((job["id"], plan.next_fire_at))
    return Materialisation(runs, cursors, unrecorded)


def run_message(row: dict[str, Any]) -> RunMessage:
    """The message for one claimed run (a row of common.db.dispatch's run fields); a row
    with its due time (a first attempt, perhaps dispatched early) must not start before it,
    nor after its start deadline, counted from that due time (jitter included, as the
    leader's claim counts it). A later attempt has no deadline: it binds the first start."""
    due = row.get("due_at")
    deadline = (due + timedelta(seconds=row["start_deadline_s"])
                if row["start_deadline_s"] and due is not None and row["attempt"] == 1
                else None)
    return RunMessage(
        run_id=row["run_id"], job_id=row["job_id"], scheduled_for=row["scheduled_for"],
        attempt=row["attempt"], max_attempts=row["max_attempts"], job_type=row["job_type"],
        payload=row["payload"], pool=row["pool"], priority=row["priority"],
        concurrency=row["concurrency"], timeout_s=row["timeout_s"],
        backoff={"base": row["backoff_base_s"], "factor": row["backoff_factor"],
                 "cap": row["backoff_cap_s"], "jitter": row["backoff_jitter"]},
        epoch=row["epoch"], start_deadline=deadline, not_before=due,
        dispatch=row["dispatch"])


class TimerHeap:
    """Runs waiting for their due time; pops due ones most urgent first."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, int]] = []  # (due_at, -priority, run_id)
        self._ready: list[tuple[int, datetime, int]] = []  # due: (-priority, due_at, run_id)
        self._ids: set[int] = set()

    def __len__(self) -> int:
        return len(self._heap) + len(self._ready)

    def add(self, run_id: int, due_at: datetime, priority: int) -> None:
        """Hold a run until `due_at` (a run already held is ignored)."""
        if run_id not in self._ids:
            self._ids.add(run_id)
            heapq.heappush(self._heap, (due_at, -priority, run_id))

    def next_due(self) -> datetime | None:
        """The earliest due time held (one in the past while due runs wait)."""
        if self._ready:
            return self._ready[0][1]
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: datetime, limit: int) -> list[int]:
        """Up to `limit` run ids due at `now`, higher priority first, then earlier due.
        Each run moves once to the heap of due runs, so a large backlog due at once costs
        O(log n) a run rather than a sort of the backlog on every call."""
        while self._heap and self._heap[0][0] <= now:
            due_at, neg_priority, run_id = heapq.heappop(self._heap)
            heapq.heappush(self._ready, (neg_priority, due_at, run_id))
        taken = [heapq.heappop(self._ready)[2] for _ in range(min(limit, len(self._ready)))]
        self._ids.difference_update(taken)
        return taken

    def clear(self) -> None:
        """Forget everything (a new term reloads from the database)."""
        self._heap.clear()
        self._ready.clear()
        self._ids.clear()


def redelivery(state: str, run_attempt: int, reported_attempt: int, max_attempts: int, *,
               run_copy: int, reported_copy: int | None) -> str:
    """What to do when a worker reports that attempt `reported_attempt` came back to a queue;
    `run_copy` is the run's dispatch number, `reported_copy` that of the copy that came back
    (None from a worker older than the field: taken as the latest, as before numbers).

    ``republish``: it never started, send the same attempt again; ``retry``: send the next
    attempt; ``bury``: the same, with no attempts left; ``ignore``: the database has moved
    on (a stale or duplicate report), or the attempt is running and the leader decides.
    """
    if reported_copy is not None and reported_copy != run_copy:
        # Reported before (the report went out twice, or its acknowledgement was lost and
        # the copy came back again) and acted on, or replaced by the schedulers since: a
        # second copy published now would be a second execution.
        return "ignore"
    after_failure = state in ("failed", "timed_out", "retrying")
    if reported_attempt == run_attempt:
        if state == "queued":
            return "republish"
        # The worker reported the failure, then died or lost its connection before its
        # retry message was confirmed: send the next attempt rather than leave the run
        # waiting for nothing. `retrying` is reported only after that confirm: the retry
        # is on its way. A `running` attempt is not decided here: its worker may live on
        # behind a broken connection (its heartbeats tell; see StatusConsumer._abandoned).
        if state in ("failed", "timed_out"):
            return "retry" if run_attempt < max_attempts else "bury"
        return "ignore"
    if reported_attempt == run_attempt + 1 and after_failure:
        # The retry message itself came back before it started: send it again.
        return "retry" if run_attempt < max_attempts else "bury"
    return "ignore"


def packs(keys: Sequence[str], size: int) -> list[list[int]]:
    """Indexes of runs to send together, one pack per message: runs with the same routing
    key (`keys[i]` is run i's), in their order, `size` at most to a pack."""
    by_key: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        by_key.setdefault(key, []).append(index)
    return [group[start:start + size] for group in by_key.values()
            for start in range(0, len(group), size)]
