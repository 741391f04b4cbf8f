"""Memory of the daemons: resident set size at idle, and with a million jobs stored.

The million jobs (`bench.bulk`, COPY) are mostly quiet, as in a real installation: 69 %
daily and 20 % hourly cron jobs spread over the day and the hour, 10 % paused, and 1 %
firing every minute (each on its own second). That is N/6,000 fires per second from the
every-minute jobs plus about N/15,000 from the others: a realistic share due soon that
keeps the leader materialising and dispatching while its RSS is sampled.
(The RSS under load is sampled by the throughput benchmark.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from bench import bulk, jobs
from bench.rss import RssSampler
from common.db import Database
from common.jobs import JobSpec

# (share of the jobs, paused?, the cron expressions they are spread over)
MIX: tuple[tuple[str, float, bool, list[str]], ...] = (
    ("daily", 0.69, False, [f"0 {m} {h} * * *" for h in range(24) for m in range(60)]),
    ("hourly", 0.20, False, [f"{s} {m} * * * *" for m in range(60) for s in range(60)]),
    ("paused", 0.10, True, [f"{s} * * * * *" for s in range(60)]),
    ("every_minute", 0.01, False, [f"{s} * * * * *" for s in range(60)]),
)


def templates(count: int) -> list[bulk.Template]:
    """`count` python no-op jobs in the proportions of MIX (the last kind takes the rest)."""
    out: list[bulk.Template] = []
    left = count
    for n, (kind, share, paused, exprs) in enumerate(MIX):
        kind_count = left if n == len(MIX) - 1 else round(count * share)
        left -= kind_count
        for expr, part in zip(exprs, bulk.spread(kind_count, len(exprs)), strict=True):
            if part:
                out.append(bulk.Template(
                    JobSpec(name=f"bench-mem-{kind}", job_type="python",
                            payload=dict(jobs.PYTHON_NOOP), schedule_kind="cron",
                            schedule_expr=expr), part, paused=paused))
    return out


def idle(pids: dict[str, int], seconds: float) -> dict[str, Any]:
    """Sample every daemon's VmRSS for `seconds` with nothing scheduled."""
    with RssSampler(pids) as sampler:
        time.sleep(seconds)
    return {"seconds": seconds, "peak_kib": dict(sampler.peak_kib),
            "hwm_kib": dict(sampler.hwm_kib)}


def with_jobs(db: Database, *, count: int, seconds: float, pids: dict[str, int], leader: str,
              progress: Callable[[str], None]) -> dict[str, Any]:
    """Store `count` jobs, then sample every daemon's RSS for `seconds` after the first
    every-minute fire (sampling also runs during the COPY)."""
    specs = templates(count)
    base = (jobs.utcnow() + timedelta(seconds=5.0 + count / 20_000)).replace(microsecond=0)
    progress(f"storing {count:,} jobs with COPY (daily 69 %, hourly 20 %, paused 10 %, "
             f"every minute 1 %); the first fires at {base:%H:%M:%S}")
    with RssSampler(pids) as sampler:
        inserted = bulk.insert(db, specs, base=base, progress=progress)
        progress(f"  stored in {inserted.seconds:.1f} s ({inserted.per_second:,.0f}/s); "
                 f"sampling RSS for {seconds:g} s from the first fire")
        until = max(jobs.utcnow(), base) + timedelta(seconds=seconds)
        while (left := (until - jobs.utcnow()).total_seconds()) > 0:
            time.sleep(min(10.0, left))
            progress(f"  {leader} (leader) RSS {sampler.last_kib.get(leader, 0) / 1024:,.0f} "
                     f"MiB, peak {sampler.peak_kib.get(leader, 0) / 1024:,.0f} MiB")
    with db.transaction() as conn:
        row = conn.execute(
            "SELECT count(*) AS runs, count(started_at) AS started FROM runs "
            "WHERE job_id BETWEEN %s AND %s", (inserted.first_id, inserted.last_id)).fetchone()
        size = conn.execute("SELECT pg_total_relation_size('jobs') AS b").fetchone()
    assert row is not None and size is not None
    peak = {name: max(sampler.peak_kib.get(name, 0), sampler.hwm_kib.get(name, 0))
            for name in pids}
    return {"jobs": count, "mix": {kind: share for kind, share, _, _ in MIX},
            "stored_seconds": round(inserted.seconds, 1), "sampled_seconds": seconds,
            "runs_during": int(row["runs"]), "started_during": int(row["started"]),
            "jobs_table_mib": round(int(size["b"]) / 2**20, 1),
            "leader": leader, "peak_kib": peak, "sampled_peak_kib": dict(sampler.peak_kib),
            "last_kib": dict(sampler.last_kib), "leader_kib": peak.get(leader, 0)}
