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
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from bench import jobs, stats
from common import jobops
from common.db import Database
from common.db import jobs as store
from common.devstack import Daemon, Stack
from common.jobs import JobSpec, validate

TRICKLE_JOBS = 10               # one run due every 1 s / TRICKLE_JOBS
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


def current_epoch(db: Database) -> int:
    """The fencing epoch recorded in PostgreSQL."""
    with db.transaction() as conn:
        row = conn.execute("SELECT epoch FROM cluster_epoch WHERE id = 1").fetchone()
    assert row is not None
    return int(row["epoch"])


def first_dispatch(db: Database, ids: list[int], epoch: int) -> tuple[datetime, int] | None:
    """(queued_at, epoch) of the earliest run of jobs `ids` claimed under an epoch after
    `epoch` (the trickle's runs are the ones due every 100 ms; the filter also keeps
    the 50 polls a second off the rest of the runs table)."""
    with db.transaction() as conn:
        row = conn.execute(
            "SELECT queued_at, epoch FROM runs WHERE job_id = ANY(%s) AND epoch > %s "
            "AND queued_at IS NOT NULL ORDER BY queued_at LIMIT 1", (ids, epoch)).fetchone()
    return (row["queued_at"], int(row["epoch"])) if row else None


def measure(db: Database, stack: Stack, *, trials: int, session_timeout: float,
            progress: Callable[[str], None]) -> dict[str, Any]:
    """`trials` SIGKILL trials then `trials` SIGTERM trials; the summary of each."""
    trickle = create_trickle(db)
    try:
        _wait_steady(db, trickle, timeout=30.0)
        result: dict[str, Any] = {"session_timeout_s": session_timeout,
                                  "trickle": f"{TRICKLE_JOBS} jobs every 1 s, 100 ms apart"}
        for name, signum in SIGNALS:
            rows = []
            for n in range(trials):
                row = trial(db, stack, trickle, signum, session_timeout=session_timeout)
                rows.append(row)
                progress(f"  {name} {n + 1}/{trials}: {row['old_leader']} -> "
                         f"{row['new_leader']}, first dispatch after {row['seconds']:.3f} s")
            seconds = [r["seconds"] for r in rows]
            result[name.lower()] = {"trials": rows, "median_s": round(stats.median(seconds), 3),
                                    "worst_s": round(max(seconds), 3),
                                    "best_s": round(min(seconds), 3)}
            progress(f"failover after {name}: median {stats.median(seconds):.3f} s, worst "
                     f"{max(seconds):.3f} s over {trials} trials")
        return result
    finally:
        pause(db, trickle)


def trial(db: Database, stack: Stack, trickle: list[int], signum: int, *,
          session_timeout: float) -> dict[str, Any]:
    """Signal the leader once and time the next leader's first dispatch."""
    leader = stack.wait_leader(30.0)
    epoch = current_epoch(db)
    sent = jobs.utcnow()
    if signum == signal.SIGKILL:
        leader.proc.kill()
    else:
        leader.proc.signal(signum)
    deadline = time.monotonic() + session_timeout + 30.0
    found = None
    while found is None and time.monotonic() < deadline:
        time.sleep(0.02)
        found = first_dispatch(db, trickle, epoch)
    if found is None:
        raise RuntimeError(f"no dispatch under an epoch after {epoch} within "
                           f"{session_timeout + 30:.0f} s of {signal.Signals(signum).name}")
    queued_at, new_epoch = found
    new_leader = stack.wait_leader(30.0, other_than=leader)
    exited = _wait_exit(leader, timeout=45.0)
    _restart(stack, leader)
    return {"signal": signal.Signals(signum).name, "old_leader": leader.name,
            "new_leader": new_leader.name, "old_epoch": epoch, "new_epoch": new_epoch,
            "seconds": round((queued_at - sent).total_seconds(), 3),
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


def _wait_steady(db: Database, ids: list[int], timeout: float) -> None:
    """Wait until the trickle's runs are being dispatched (a few claimed in the last 2 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.transaction() as conn:
            row = conn.execute(
                "SELECT count(*) AS n FROM runs WHERE job_id = ANY(%s) "
                "AND queued_at > now() - interval '2 seconds'", (ids,)).fetchone()
        if row is not None and int(row["n"]) >= TRICKLE_JOBS:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the trickle jobs were not dispatched within {timeout:.0f} s")
