"""The pipeline end to end on real services: jobs in the database become runs on workers."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from common import broker as topo
from common import jobops
from common.broker import Broker
from common.db import Database
from common.devstack import Stack
from common.messages import RunMessage
from schedctl.services import Broadcast
from tests.integration.support import (
    alive,
    create,
    dead_letters,
    executions,
    first_state,
    ledger,
    ledger_command,
    runs,
    states,
    wait_for,
)

pytestmark = pytest.mark.timeout(240)


def test_a_thousand_immediate_jobs_each_run_exactly_once(stack: Stack, db: Database,
                                                         tmp_path: Path) -> None:
    book = tmp_path / "ledger"
    jobs = [create(db, f"bulk-{n}", command=ledger_command(book))["id"] for n in range(1000)]
    wait_for(lambda: states(db, jobs)["succeeded"] == 1000, 180, "1000 runs to succeed")
    counts = executions(book)
    print(f"runs checked 1000, executed {len(counts)}, duplicated "
          f"{sum(1 for c in counts.values() if c > 1)}")
    assert len(counts) == 1000
    assert set(counts.values()) == {1}
    assert states(db, jobs) == {"succeeded": 1000}


def test_a_seconds_cron_fires_once_at_every_second_and_an_at_job_once_at_its_time(
        stack: Stack, db: Database, tmp_path: Path) -> None:
    book, at_book = tmp_path / "cron", tmp_path / "at"
    cron = create(db, "every-second", command=ledger_command(book), kind="cron",
                  expr="* * * * * *")
    at_time = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=8)
    once = create(db, "at-once", command=ledger_command(at_book), kind="at",
                  expr=at_time.isoformat())
    time.sleep(60)
    jobops.cancel_job(db, str(cron["id"]), actor="test", notify=lambda _m: None)
    time.sleep(3)
    done = [r for r in runs(db, cron["id"]) if r["state"] == "succeeded"]
    fires = [r["scheduled_for"] for r in done]
    assert len(done) >= 55, f"only {len(done)} fires succeeded in a minute"
    assert all((b - a) == timedelta(seconds=1) for a, b in zip(fires, fires[1:], strict=False))
    assert all(r["due_at"] == r["scheduled_for"] for r in done)
    # Dispatched ahead of time (leader.dispatch_ahead), held by the worker, started on time.
    assert all(r["started_at"] >= r["scheduled_for"] for r in done)
    early = sum(1 for r in done if r["queued_at"] < r["scheduled_for"])
    assert early >= len(done) // 2, f"only {early} of {len(done)} fires dispatched ahead"
    counted = executions(book)
    assert set(counted.values()) == {1}
    assert {r["id"] for r in done} <= set(counted)
    # The attempt that was executing when the job was cancelled may have finished anyway.
    cancelled = {r["id"] for r in runs(db, cron["id"]) if r["state"] == "cancelled"}
    assert set(counted) - {r["id"] for r in done} <= cancelled
    lateness = sorted((r["started_at"] - r["scheduled_for"]).total_seconds() for r in done)
    print(f"cron lateness p50 {lateness[len(lateness) // 2] * 1000:.0f} ms, "
          f"max {lateness[-1] * 1000:.0f} ms over {len(done)} fires")
    at_runs = runs(db, once["id"])
    assert [r["state"] for r in at_runs] == ["succeeded"]
    assert at_runs[0]["scheduled_for"] == at_time
    assert at_time <= at_runs[0]["started_at"] < at_time + timedelta(seconds=2)
    assert len(ledger(at_book)) == 1


def test_a_failing_job_retries_with_growing_gaps_then_is_dead_and_dead_lettered(
        stack: Stack, db: Database) -> None:
    job = create(db, "always-fails", command="echo nope >&2; exit 7", max_attempts=4,
                 backoff_base_s=1.0, backoff_factor=2.0)
    run = wait_for(lambda: [r for r in runs(db, job["id"]) if r["state"] == "dead"], 60,
                   "the run to be dead")[0]
    with db.transaction() as conn:
        attempts = conn.execute("SELECT * FROM run_attempts WHERE run_id = %s ORDER BY attempt",
                                (run["id"],)).fetchall()
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 4]
    assert all(a["exit_code"] == 7 for a in attempts)
    gaps = [(b["started_at"] - a["finished_at"]).total_seconds()
            for a, b in zip(attempts, attempts[1:], strict=False)]
    print("gaps between attempts (s):", [round(g, 2) for g in gaps])
    for gap, backoff in zip(gaps, (1.0, 2.0, 4.0), strict=True):
        assert backoff - 0.05 <= gap < backoff + 1.5
    assert run["attempt"] == 4 and "4 of 4" in (run["reason"] or "")
    wait_for(lambda: any(isinstance(m, RunMessage) and m.run_id == run["id"] and m.attempt == 4
                         for m in dead_letters(stack.cluster)), 20, "its dead letter recorded")


def test_cancelling_a_running_job_stops_its_process_within_two_seconds(
        stack: Stack, db: Database, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    job = create(db, "long", command=f"echo $$ > {pid_file}; exec sleep 60")
    run = wait_for(lambda: [r for r in runs(db, job["id"]) if r["state"] == "running"], 30,
                   "the job to run")[0]
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, "pid"))
    began = time.monotonic()
    jobops.cancel_run(db, run["id"], actor="test",
                      notify=Broadcast(list(stack.cluster.settings.amqp_urls)))
    wait_for(lambda: not alive(pid), 5, "the process to stop", every=0.02)
    stopped = time.monotonic() - began
    print(f"process stopped {stopped:.2f} s after the cancel")
    assert stopped < 2.0
    wait_for(lambda: first_state(db, job["id"]) == "cancelled", 10, "state cancelled")


def _intervals(book: Path) -> list[tuple[float, float]]:
    return sorted((start, end) for _, _, start, end in ledger(book))


def test_a_forbid_job_never_overlaps_while_an_allow_job_does(stack: Stack, db: Database,
                                                             tmp_path: Path) -> None:
    forbid_book, allow_book = tmp_path / "forbid", tmp_path / "allow"
    forbid = create(db, "forbid", command=ledger_command(forbid_book, "sleep 3.5;"),
                    kind="every", expr="every 1 second", concurrency="forbid")
    allow = create(db, "allow", command=ledger_command(allow_book, "sleep 3.5;"),
                   kind="every", expr="every 1 second", concurrency="allow")
    time.sleep(14)
    for job in (forbid, allow):
        jobops.cancel_job(db, str(job["id"]), actor="test", notify=lambda _m: None)
    time.sleep(5)
    spans = _intervals(forbid_book)
    overlaps = sum(1 for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1])
    print(f"forbid: {len(spans)} executions, {overlaps} overlaps; "
          f"allow: {len(_intervals(allow_book))} executions")
    assert len(spans) >= 3
    assert overlaps == 0
    skipped = [r for r in runs(db, forbid["id"]) if r["state"] == "skipped"]
    assert skipped and all("overlap forbidden" in r["reason"] for r in skipped)
    allowed = _intervals(allow_book)
    assert any(b[0] < a[1] for a, b in zip(allowed, allowed[1:], strict=False))


def test_a_malformed_run_message_is_dead_lettered_and_the_workers_keep_working(
        stack: Stack, db: Database, tmp_path: Path) -> None:
    garbage = b"\x00not json at all\xff"
    broker = Broker(stack.cluster.settings.amqp_urls, name="test-garbage")
    broker.connect()
    try:
        broker.publish(topo.RUNS, "default.normal", garbage)
        broker.publish(topo.RUNS, "default.high", b'{"v": 1, "type": "run", "run_id": "x"}')
    finally:
        broker.close()
    book = tmp_path / "after"
    job = create(db, "after-garbage", command=ledger_command(book))
    wait_for(lambda: first_state(db, job["id"]) == "succeeded", 30, "the next job")
    letters: list[object] = []
    wait_for(lambda: letters.extend(dead_letters(stack.cluster)) or garbage in letters, 10,
             "the malformed message in the dead-letter queue")
