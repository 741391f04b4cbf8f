"""Many schedules: N active cron jobs firing every minute, each on its own second (so N/60
fires per second, spread evenly over the minute), for M minutes.

The jobs are stored with COPY (`bench.bulk`) before the window opens; the window is M whole
minutes from a whole second, so every job fires exactly M times in it. Figures: fires
recorded against fires expected, how many were recorded before they were due (the
leader's materialisation keeping up), dispatch lateness (queued_at - scheduled_for) and
start lateness (started_at - scheduled_for). Runs the workers had not started when the
benchmark stops waiting count as late as the cut-off (a lower bound, flagged as such),
so a backlog cannot hide by being left out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import bulk, jobs, stats
from bench.rss import RssSampler
from common.db import Database
from common.jobs import JobSpec
from common.schedule import parse_schedule

GRACE_S = 60.0          # longest wait for the window's runs to start after it closes
REPORT_EVERY_S = 15.0


def templates(count: int) -> list[bulk.Template]:
    """`count` python no-op jobs, cron `S * * * * *`, spread over the 60 seconds S."""
    return [bulk.Template(JobSpec(name=f"bench-cron-s{second:02d}", job_type="python",
                                  payload=dict(jobs.PYTHON_NOOP), schedule_kind="cron",
                                  schedule_expr=f"{second} * * * * *"), share)
            for second, share in enumerate(bulk.spread(count, 60)) if share]


def expected_fires(specs: list[bulk.Template], begin: datetime, end: datetime) -> int:
    """Fires of every template's copies in [begin, end), from the schedules themselves."""
    total = 0
    for template in specs:
        spec = template.spec
        schedule = parse_schedule(spec.schedule_expr, kind=spec.schedule_kind,
                                  tz=spec.time_zone, now=begin)
        fires = 0
        fire = schedule.first_fire(begin)
        while fire is not None and fire < end:
            fires += 1
            fire = schedule.next_after(fire)
        total += fires * template.count
    return total


def measure(db: Database, *, count: int, minutes: int, pids: dict[str, int],
            progress: Callable[[str], None]) -> dict[str, Any]:
    """Store the jobs, let the window pass, then summarise it."""
    specs = templates(count)
    lead = 10.0 + count / 20_000  # COPY runs at 30,000-60,000 rows/s here
    base = (jobs.utcnow() + timedelta(seconds=lead)).replace(microsecond=0)
    progress(f"storing {count:,} cron jobs (every minute, {count / 60:,.0f} fires/s) "
             f"with COPY; the window opens at {base:%H:%M:%S}")
    inserted = bulk.insert(db, specs, base=base, progress=progress)
    spare = (base - inserted.finished_at).total_seconds()
    progress(f"  stored in {inserted.seconds:.1f} s ({inserted.per_second:,.0f}/s); the "
             f"window opens in {spare:.1f} s and lasts {minutes} min")
    end = base + timedelta(minutes=minutes)
    expected = expected_fires(specs, base, end)
    with RssSampler(pids) as sampler:
        _watch(db, inserted, base, end, expected, progress)
        cutoff_wait = _wait_started(db, inserted, base, end, expected, progress)
    result = figures(_window_runs(db, inserted, base, end), expected,
                     missing_bound_ms=(jobs.utcnow() - end).total_seconds() * 1000)
    result.update(jobs=count, minutes=minutes, fires_per_s=round(count / 60, 1),
                  stored_seconds=round(inserted.seconds, 1),
                  stored_before_window_s=round(spare, 1), waited_after_window_s=cutoff_wait,
                  rss_peak_kib={name: max(sampler.peak_kib.get(name, 0),
                                          sampler.hwm_kib.get(name, 0)) for name in pids})
    start = result["start_ms"]
    progress(f"many schedules: {result['recorded']:,}/{expected:,} fires recorded "
             f"({result['recorded_in_time']:,} before due); start lateness p50 "
             f"{start['p50']:,.0f} ms, p99 {'>= ' if start['lower_bound'] else ''}"
             f"{start['p99']:,.0f} ms ({result['not_started']:,} not started)")
    return result


def _counts(db: Database, inserted: bulk.Inserted, begin: datetime,
            end: datetime) -> tuple[int, int]:
    with db.transaction() as conn:
        row = conn.execute(
            "SELECT count(*) AS recorded, count(started_at) AS started FROM runs "
            "WHERE job_id BETWEEN %s AND %s AND scheduled_for >= %s AND scheduled_for < %s",
            (inserted.first_id, inserted.last_id, begin, end)).fetchone()
    assert row is not None
    return int(row["recorded"]), int(row["started"])


def _watch(db: Database, inserted: bulk.Inserted, begin: datetime, end: datetime,
           expected: int, progress: Callable[[str], None]) -> None:
    while True:
        left = (end - jobs.utcnow()).total_seconds()
        if left <= 0:
            return
        time.sleep(min(REPORT_EVERY_S, left))
        recorded, started = _counts(db, inserted, begin, end)
        progress(f"  window: {recorded:,} of {expected:,} fires recorded, {started:,} started")


def _wait_started(db: Database, inserted: bulk.Inserted, begin: datetime, end: datetime,
                  expected: int, progress: Callable[[str], None]) -> float:
    """Wait (at most GRACE_S) until every expected fire has started; the seconds waited."""
    began = time.monotonic()
    while True:
        recorded, started = _counts(db, inserted, begin, end)
        waited = time.monotonic() - began
        if started >= expected or waited >= GRACE_S:
            progress(f"  after the window: {started:,}/{expected:,} started "
                     f"({waited:.0f} s after it closed)")
            return round(waited, 1)
        time.sleep(1.0)


def _window_runs(db: Database, inserted: bulk.Inserted, begin: datetime,
                 end: datetime) -> list[dict[str, Any]]:
    with db.transaction() as conn:
        return conn.execute(
            "SELECT extract(epoch FROM started_at - scheduled_for)::float8 AS start_s, "
            "extract(epoch FROM queued_at - scheduled_for)::float8 AS queued_s, "
            "extract(epoch FROM now() - scheduled_for)::float8 AS bound_s, "
            "created_at <= scheduled_for AS in_time, state FROM runs "
            "WHERE job_id BETWEEN %s AND %s AND scheduled_for >= %s AND scheduled_for < %s",
            (inserted.first_id, inserted.last_id, begin, end)).fetchall()


def figures(runs: list[dict[str, Any]], expected: int, *,
            missing_bound_ms: float) -> dict[str, Any]:
    """Fires kept up and lateness of the window's runs (rows of `_window_runs`), in ms. A
    run not started (or not queued) counts with its cut-off bound, and an expected fire
    with no run at all with `missing_bound_ms` (the cut-off minus the window's end)."""
    missing = [missing_bound_ms] * max(0, expected - len(runs))
    started = [r["start_s"] * 1000 for r in runs if r["start_s"] is not None]
    unstarted = [r["bound_s"] * 1000 for r in runs if r["start_s"] is None] + missing
    queued = [r["queued_s"] * 1000 for r in runs if r["queued_s"] is not None]
    unqueued = [r["bound_s"] * 1000 for r in runs if r["queued_s"] is None] + missing
    skipped = sum(1 for r in runs if r["state"] == "skipped")
    return {
        "expected": expected,
        "recorded": len(runs),
        "recorded_in_time": sum(1 for r in runs if r["in_time"]),
        "skipped": skipped,
        "missing": len(missing),
        "not_started": len(unstarted) - skipped - len(missing),
        "kept_up": round(len(runs) / expected, 4) if expected else None,
        "start_ms": stats.censored_summary(started, unstarted) if runs else None,
        "queued_ms": stats.censored_summary(queued, unqueued) if runs else None,
        "measured_at": datetime.now(UTC).isoformat(),
    }

