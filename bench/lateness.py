"""Start lateness at a steady rate: runs due evenly at `per_second`, each measured as
`started_at - scheduled_for` (the worker's start stamp against the fire time)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from bench import jobs, stats
from common import jobops
from common.db import Database
from common.jobs import JobSpec


def measure(db: Database, *, per_second: float, seconds: float,
            progress: Callable[[str], None]) -> dict[str, Any]:
    """Create the jobs (all before the first fire), wait for every run, summarise."""
    count = int(per_second * seconds)
    pace = jobs.creation_rate(db, progress=progress)
    first = jobs.utcnow() + jobs.creation_lead(count, pace)
    specs = [jobs.at_spec(f"bench-lateness-{n}", "python", jobs.PYTHON_NOOP,
                          first + timedelta(seconds=offset))
             for n, offset in enumerate(stats.even_offsets(count, per_second))]
    created = jobs.create_jobs(db, specs, progress=progress)
    spare = (first - created.finished_at).total_seconds()
    progress(f"created {created.count:,} jobs due at {per_second:g}/s over {seconds:g} s; "
             f"the first fires in {spare:.1f} s")
    if spare <= 0:
        progress("  WARNING: creation ran past the first fire time")
    time.sleep(max(0.0, spare))
    complete = jobs.wait_finished(db, created, timeout=seconds + 120, stall=60,
                                  progress=progress)
    result = figures(jobs.runs_of(db, created))
    result.update(rate_per_s=per_second, seconds=seconds, jobs=count, complete=complete)
    start = result["start_ms"]
    if start:
        progress(f"lateness at {per_second:g} runs/s: p50 {start['p50']:.0f} ms, "
                 f"p99 {start['p99']:.0f} ms, max {start['max']:.0f} ms "
                 f"({start['count']:,} runs)")
    return result


def figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Start lateness (started_at - scheduled_for) and dispatch lateness (queued_at -
    scheduled_for) summaries in milliseconds; None where no run has the column."""
    started = [_ms(r["started_at"] - r["scheduled_for"]) for r in runs
               if r["started_at"] is not None]
    queued = [_ms(r["queued_at"] - r["scheduled_for"]) for r in runs
              if r["queued_at"] is not None]
    first = min((r["scheduled_for"] for r in runs), default=None)
    worst = sorted((r for r in runs if r["started_at"] is not None),
                   key=lambda r: r["started_at"] - r["scheduled_for"], reverse=True)[:5]
    return {"runs": len(runs), "started": len(started),
            "start_ms": _rounded(stats.summarize(started).as_dict()) if started else None,
            "queued_ms": _rounded(stats.summarize(queued).as_dict()) if queued else None,
            "over_100ms": sum(1 for ms in started if ms > 100),
            # The latest starters: when they were due (seconds after the first fire), how
            # late they were queued and started (ms): is lateness spread or one stall?
            "worst": [{"due_s": round((r["scheduled_for"] - first).total_seconds(), 2),
                       "queued_ms": round(_ms(r["queued_at"] - r["scheduled_for"]), 1)
                       if r["queued_at"] else None,
                       "start_ms": round(_ms(r["started_at"] - r["scheduled_for"]), 1)}
                      for r in worst] if first else []}


def _ms(delta: timedelta) -> float:
    return delta.total_seconds() * 1000.0


def _rounded(summary: dict[str, float | int]) -> dict[str, float | int]:
    return {key: round(value, 1) if isinstance(value, float) else value
            for key, value in summary.items()}


def periodic(db: Database, *, seconds: float, progress: Callable[[str], None]) -> dict[str, Any]:
    """One `every 1 second` no-op job (created as `schedctl job create` does) for `seconds`,
    then paused; start lateness of its fires after the first (which is due at creation)."""
    job, _ = jobops.create_job(db, JobSpec(name="bench-periodic", job_type="python",
                                           payload=dict(jobs.PYTHON_NOOP),
                                           schedule_kind="every", schedule_expr="1s"),
                               actor="bench")
    time.sleep(seconds + 1.0)
    jobops.pause_job(db, str(job["id"]), actor="bench")
    created = jobs.Created(int(job["id"]), int(job["id"]), 1, 0.0, jobs.utcnow())
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        runs = jobs.runs_of(db, created)
        if all(r["state"] in jobs.FINAL_STATES for r in runs):
            break
        time.sleep(0.5)
    runs = sorted(jobs.runs_of(db, created), key=lambda r: r["scheduled_for"])[1:]
    late = [_ms(r["started_at"] - r["scheduled_for"]) for r in runs
            if r["started_at"] is not None and r["state"] != "skipped"]
    result: dict[str, Any] = {"fires": len(runs), "seconds": seconds,
                              "start_ms": stats.censored_summary(late, []) if late else None}
    if late:
        s = result["start_ms"]
        progress(f"Zeitplan 1-s periodic: p50 {s['p50']:.1f} ms, p99 {s['p99']:.1f} ms, "
                 f"max {s['max']:.1f} ms ({len(late)} fires)")
    return result
