"""Failover: from a signal to the leader until the next leader's first dispatch.

A steady trickle keeps a run due every 100 ms: ten `every 1 second` no-op jobs whose
anchors are 100 ms apart (created through `common.jobs.validate` and `common.db.jobs.create`,
each with its own creation instant). Each trial notes the current epoch, signals the
leader (SIGKILL: its ZooKeeper session has to expire, so the session timeout bounds the
figure from below; SIGTERM: it stops after its cycle and resigns), and polls PostgreSQL for
the first run claimed under a later epoch: failover = min(runs.queued_at) over epochs
greater than the old one, minus the time the signal was sent (one clock: one machine).
Overdue runs are dispatched at once by a new leader, so the trickle's 100 ms spacing does
not round the figure up. Between trials the stopped scheduler is started again and
waited for, so every trial starts with three schedulers.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeVar

from bench import jobs, stats
from common import jobops
from common.db import Database
from common.db import jobs as store
from common.devstack import Daemon, Stack
from common.errors import DatabaseError
from common.jobs import JobSpec, validate

T = TypeVar("T")
TRICKLE_JOBS = 10               # one run due every 1 s / TRICKLE_JOBS
TRICKLE = f"{TRICKLE_JOBS} jobs every 1 s, {1000 // TRICKLE_JOBS} ms apart"
SETTLE_S = 2.0                  # after a restarted scheduler is ready, before the next trial
SIGNALS = (("SIGKILL", signal.SIGKILL), ("SIGTERM", signal.SIGTERM))


def create_trickle(db: Database, *, prefix: str = "bench-trickle") -> list[int]:
    """TRICKLE_JOBS interval jobs firing every second, anchors 1/TRICKLE_JOBS s apart."""
    base = jobs.utcnow() + timedelta(seconds=1)
    ids: list[int] = []
    with db.transaction() as conn:
        for n in range(TRICKLE_JOBS):
            now = base + timedelta(seconds=n / TRICKLE_JOBS)
            spec, first = validate(JobSpec(name=f"{prefix}-{n}", job_type="python",
                                           payload=dict(jobs.PYTHON_NOOP),
                                           schedule_kind="every", schedule_expr="1s"), now=now)
            job, _ = store.create(conn, spec, first_fire=first, now=now, actor="bench")
            ids.append(int(job["id"]))
    return ids


def pause(db: Database, ids: list[int]) -> None:
    """Pause jobs the way `schedctl job pause` does."""
    for job_id in ids:
        jobops.pause_job(db, str(job_id), actor="bench")


@contextmanager
def trickle(db: Database) -> Iterator[list[int]]:
    """The trickle's job ids once its runs are being dispatched; paused on the way out."""
    ids = create_trickle(db)
    try:
        wait_steady(db, ids, timeout=30.0)
        yield ids
    finally:
        pause(db, ids)


def poll(probe: Callable[[], T | None], *, timeout: float, what: str,
         every: float = 0.02) -> T:
    """Call `probe` every `every` s until it returns something; a database that does not
    answer counts as nothing yet. RuntimeError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = probe()
        except DatabaseError:
            found = None
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} within {timeout:.0f} s")
        time.sleep(every)


def current_epoch(db: Database) -> int:
    """The fencing epoch recorded in PostgreSQL."""
    with db.transaction() as conn:
        row = conn.execute("SELECT epoch FROM cluster_epoch WHERE id = 1").fetchone()
    assert row is not None
    return int(row["epoch"])


class Dispatch(NamedTuple):
    """The earliest matching run's claim, and the earliest start among the matching runs."""

    queued_at: datetime
    epoch: int
    started_at: datetime | None


def first_dispatch(db: Database, ids: list[int], *, epoch: int | None = None,
                   after: datetime | None = None) -> Dispatch | None:
    """The first dispatch of jobs `ids` claimed under an epoch after `epoch` and/or queued
    after `after`: the earliest such claim, and the earliest start among those runs (the
    trickle's runs are the ones due every 100 ms; the filter also keeps the 50 polls a
    second off the rest of the runs table)."""
    where = ["job_id = ANY(%s)", "queued_at IS NOT NULL"]
    params: list[Any] = [ids]
    if epoch is not None:
        where.append("epoch > %s")
        params.append(epoch)
    if after is not None:
        where.append("queued_at > %s")
        params.append(after)
    with db.transaction() as conn:
        row = conn.execute(
            "SELECT queued_at, epoch, min(started_at) OVER () AS first_start FROM runs "
            f"WHERE {' AND '.join(where)} ORDER BY queued_at LIMIT 1", params).fetchone()
    return Dispatch(row["queued_at"], int(row["epoch"]), row["first_start"]) if row else None


def summary(seconds: Sequence[float]) -> dict[str, float]:
    """Median, worst and best of trial figures, in seconds (3 decimals)."""
    return {"median_s": round(stats.median(seconds), 3), "worst_s": round(max(seconds), 3),
            "best_s": round(min(seconds), 3)}


def measure(db: Database, stack: Stack, *, trials: int, session_timeout: float,
            progress: Callable[[str], None]) -> dict[str, Any]:
    """`trials` SIGKILL trials then `trials` SIGTERM trials; the summary of each."""
    with trickle(db) as ids:
        result: dict[str, Any] = {"session_timeout_s": session_timeout, "trickle": TRICKLE}
        for name, signum in SIGNALS:
            rows = []
            for n in range(trials):
                row = trial(db, stack, ids, signum, session_timeout=session_timeout)
                rows.append(row)
                progress(f"  {name} {n + 1}/{trials}: {row['old_leader']} -> "
                         f"{row['new_leader']}, first dispatch after {row['seconds']:.3f} s")
            result[name.lower()] = {"trials": rows, **summary([r["seconds"] for r in rows])}
            progress(f"failover after {name}: median {result[name.lower()]['median_s']:.3f} "
                     f"s, worst {result[name.lower()]['worst_s']:.3f} s over {trials} trials")
        return result


def trial(db: Database, stack: Stack, ids: list[int], signum: int, *,
          session_timeout: float) -> dict[str, Any]:
    """Signal the leader once and time the next leader's first dispatch."""
    leader = stack.wait_leader(30.0)
    epoch = current_epoch(db)
    sent = jobs.utcnow()
    if signum == signal.SIGKILL:
        leader.proc.kill()
    else:
        leader.proc.signal(signum)
    found = poll(lambda: first_dispatch(db, ids, epoch=epoch), timeout=session_timeout + 30.0,
                 what=f"dispatch under an epoch after {epoch} after "
                      f"{signal.Signals(signum).name}")
    new_leader = stack.wait_leader(30.0, other_than=leader)
    exited = _wait_exit(leader, timeout=45.0)
    _restart(stack, leader)
    return {"signal": signal.Signals(signum).name, "old_leader": leader.name,
            "new_leader": new_leader.name, "old_epoch": epoch, "new_epoch": found.epoch,
            "seconds": round((found.queued_at - sent).total_seconds(), 3),
            "old_exit_s": round(exited, 3) if exited is not None else None}


def _wait_exit(daemon: Daemon, timeout: float) -> float | None:
    """Seconds until the signalled process ended (None: it did not; it is killed)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if not daemon.proc.is_running():
            return time.monotonic() - began
        time.sleep(0.02)
    daemon.proc.kill()
    return None


def _restart(stack: Stack, daemon: Daemon) -> None:
    daemon.proc.start()
    stack.wait_healthy(daemon, 60.0)
    time.sleep(SETTLE_S)


def wait_steady(db: Database, ids: list[int], timeout: float) -> None:
    """Wait until the trickle's runs are being dispatched (a few claimed in the last 2 s)."""
    def steady() -> bool | None:
        with db.transaction() as conn:
            row = conn.execute(
                "SELECT count(*) AS n FROM runs WHERE job_id = ANY(%s) "
                "AND queued_at > now() - interval '2 seconds'", (ids,)).fetchone()
        return True if row is not None and int(row["n"]) >= TRICKLE_JOBS else None
    poll(steady, timeout=timeout, every=0.2, what="dispatch of the trickle jobs")
