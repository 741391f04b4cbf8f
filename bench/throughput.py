"""End-to-end throughput: no-op runs from their fire time to the last one finished.

All jobs share one `at` time a few seconds after the last is created, so the measurement
starts at that fire time and covers everything after it: materialisation (whatever of it
the leader's lookahead did not do beforehand), dispatch, the workers, status reporting.
It ends at the largest `finished_at` in the runs table (stamped by the worker when the run
ended; the scheduler records it shortly after).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from bench import jobs, stats
from common.db import Database


def measure(db: Database, *, job_type: str, payload: dict[str, Any], count: int,
            progress: Callable[[str], None],
            during: Callable[[], AbstractContextManager[Any]] | None = None,
            around: Callable[[], AbstractContextManager[Any]] | None = None
            ) -> dict[str, Any]:
    """Create `count` no-op jobs of `job_type` firing together, wait, return the figures.
    `during` (a profiler) is entered a second before the fire time and left at the end;
    `around` (what is too slow to enter then) once the jobs are stored, and left after
    `during`."""
    pace = jobs.creation_rate(db, progress=progress)
    fire = jobs.utcnow() + jobs.creation_lead(count, pace)
    specs = [jobs.at_spec(f"bench-{job_type}-{n}", job_type, payload, fire)
             for n in range(count)]
    created = jobs.create_jobs(db, specs, progress=progress)
    spare = (fire - created.finished_at).total_seconds()
    progress(f"created {created.count:,} {job_type} jobs in {created.seconds:.1f} s "
             f"({created.per_second:,.0f}/s); they fire in {spare:.1f} s")
    if spare <= 0:
        progress("  WARNING: creation ran past the fire time; the figure includes creation")
    with around() if around is not None else contextlib.nullcontext():
        time.sleep(max(0.0, (fire - jobs.utcnow()).total_seconds() - 1.0))
        with during() if during is not None else contextlib.nullcontext():
            time.sleep(max(0.0, (fire - jobs.utcnow()).total_seconds()))
            complete = jobs.wait_finished(db, created, timeout=60 + count / 20, stall=60,
                                          progress=progress)
    result = figures(jobs.runs_of(db, created), count)
    result.update(job_type=job_type, complete=complete,
                  creation_seconds=round(created.seconds, 2),
                  created_before_fire_s=round(spare, 2))
    progress(f"{job_type} no-op: {result['finished']:,} runs in {result['seconds']:.2f} s "
             f"= {result['runs_per_s']:,.0f} runs/s (last claimed for dispatch at "
             f"+{result['last_queued_s']:.2f} s, first start at +{result['first_start_s']:.2f} s)")
    return result


def figures(runs: list[dict[str, Any]], jobs_created: int) -> dict[str, Any]:
    """The throughput figures of one batch of runs (rows of `jobs.runs_of`)."""
    finished = [r for r in runs if r["finished_at"] is not None]
    states = Counter(str(r["state"]) for r in runs)
    if not finished:
        return {"jobs": jobs_created, "runs": len(runs), "finished": 0, "states": dict(states),
                "seconds": 0.0, "runs_per_s": 0.0, "last_queued_s": 0.0, "first_start_s": 0.0}
    start = min(r["scheduled_for"] for r in runs)
    end = max(r["finished_at"] for r in finished)
    seconds = (end - start).total_seconds()
    queued = [r["queued_at"] for r in runs if r["queued_at"] is not None]
    started = [r["started_at"] for r in runs if r["started_at"] is not None]
    return {
        "jobs": jobs_created,
        "runs": len(runs),
        "finished": len(finished),
        "states": dict(states),
        "seconds": round(seconds, 3),
        "runs_per_s": round(stats.rate(len(finished), seconds), 1),
        # Timeline relative to the fire time: when the leader claimed the last run for
        # dispatch, and when the first run started on a worker.
        "last_queued_s": round((max(queued) - start).total_seconds(), 3) if queued else 0.0,
        "first_start_s": round((min(started) - start).total_seconds(), 3) if started else 0.0,
    }
