"""Concurrency policies queue_one and replace, a forbid copy that finds its own attempt's
lock, the worker registry, and a worker's drain."""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from common import jobops
from common.db import Database
from common.devstack import Stack
from common.zk import Coordinator
from schedctl.services import Broadcast
from tests.integration.support import (
    create,
    first_state,
    heal,
    ledger,
    ledger_command,
    runs,
    wait_for,
)

pytestmark = pytest.mark.timeout(180)


def _spans(book: Path) -> list[tuple[float, float]]:
    return sorted((start, end) for _, _, start, end in ledger(book))


def test_queue_one_lets_one_fire_wait_and_skips_the_rest(stack: Stack, db: Database,
                                                         tmp_path: Path) -> None:
    book = tmp_path / "ledger"
    job = create(db, "queue-one", command=ledger_command(book, "sleep 4;"), kind="every",
                 expr="every 1 second", concurrency="queue_one")
    time.sleep(10)
    jobops.cancel_job(db, str(job["id"]), actor="test", notify=lambda _m: None)
    wait_for(lambda: not any(r["state"] in ("running", "queued") for r in runs(db, job["id"])),
             30, "the running and waiting fires to finish")
    spans = _spans(book)
    gaps = [b[0] - a[1] for a, b in zip(spans, spans[1:], strict=False)]
    skipped = [r for r in runs(db, job["id"]) if r["state"] == "skipped"]
    print(f"{len(spans)} executions, gaps {[round(g, 2) for g in gaps]}, {len(skipped)} skipped")
    assert len(spans) >= 2
    assert all(g >= 0 for g in gaps)  # never two at once
    assert all(g < 1.5 for g in gaps)  # the waiting fire starts as soon as the lock is free
    assert skipped and all("one fire already waits" in r["reason"] for r in skipped)


def test_replace_cancels_the_running_attempt_for_the_new_fire(stack: Stack, db: Database,
                                                              tmp_path: Path) -> None:
    book = tmp_path / "ledger"
    job = create(db, "replace", command=ledger_command(book, "sleep 30;"), kind="every",
                 expr="every 3 seconds", concurrency="replace", time_zone="UTC")
    wait_for(lambda: sum(r["state"] == "cancelled" for r in runs(db, job["id"])) >= 2, 40,
             "two attempts to be replaced")
    jobops.cancel_job(db, str(job["id"]), actor="test",
                      notify=Broadcast(list(stack.cluster.settings.amqp_urls)))
    history = runs(db, job["id"])
    replaced = [r for r in history if r["state"] == "cancelled" and r["started_at"]]
    assert len(replaced) >= 2
    assert ledger(book) == []  # no attempt lived long enough to finish its 30 s


def test_workers_and_schedulers_register_themselves(stack: Stack) -> None:
    coord = Coordinator(stack.cluster.settings.zk_hosts, root="/zeitplan", session_timeout=4,
                        name="test-reader")
    coord.start()
    try:
        members = wait_for(lambda: (m := coord.members("workers")) and len(m) == 2 and m, 10,
                           "both workers to register")
        schedulers = coord.members("schedulers")
        names = coord.member_names("workers")
        missing = coord.member_names("nobody-registers-this")
    finally:
        coord.stop()
    assert members  # wait_for returns only a truthy probe
    assert set(members) == set(names) == {w.name for w in stack.workers}
    assert missing == []
    assert all(m["pools"] == ["default"] and m["slots"] == 4 for m in members.values())
    assert set(schedulers) == {s.name for s in stack.schedulers}


def test_a_terminated_worker_finishes_its_running_job_and_hands_back_the_rest(
        stack: Stack, db: Database, tmp_path: Path) -> None:
    book = tmp_path / "ledger"
    jobs = [create(db, f"drain-{n}", command=ledger_command(book, "sleep 3;"))["id"]
            for n in range(16)]
    victim = stack.workers[0]

    def running_there() -> list[int]:
        return [j for j in jobs if first_state(db, j) == "running"
                and runs(db, j)[0]["worker"] == victim.name]
    # Its `running` reports may reach the database after the other worker's.
    wait_for(lambda: len(running_there()) >= 2, 20, f"{victim.name} to be busy")
    started_there = running_there()
    victim.proc.signal(signal.SIGTERM)
    wait_for(lambda: not victim.proc.is_running(), 40, "the worker to drain and exit")
    wait_for(lambda: all(first_state(db, j) == "succeeded" for j in jobs), 90,
             "every job to succeed")
    for job_id in started_there:
        run = runs(db, job_id)[0]
        assert run["worker"] == victim.name and run["attempt"] == 1  # finished where it ran
    counts: dict[int, int] = {}
    for run_id, _, _, _ in ledger(book):
        counts[run_id] = counts.get(run_id, 0) + 1
    assert len(counts) == 16 and set(counts.values()) == {1}
    heal(stack)


def _copies(stack: Stack) -> set[int]:
    """Runs a worker took for a copy of an attempt that holds its job's lock (its logs)."""
    found = set()
    for worker in stack.workers:
        for line in worker.proc.log_path.read_text(errors="replace").splitlines():
            if '"duplicate_delivery"' in line:
                found.add(int(json.loads(line)["run_id"]))
    return found


def test_a_copy_that_finds_its_own_attempt_holding_the_lock_is_reported_not_dropped(
        stack: Stack, db: Database) -> None:
    # A lock node naming the run's first attempt, held by a session that does not run it:
    # what a worker's create leaves when ZooKeeper applied it but the reply was lost and
    # the attempt was given back. The copy that arrives must not be acknowledged silently
    # (the run would stay queued and the job blocked for as long as that session lives).
    due = datetime.now(UTC) + timedelta(seconds=4)
    job = create(db, "orphan-lock", command="true", kind="at", expr=due.isoformat(),
                 concurrency="forbid")
    run = wait_for(lambda: next(iter(runs(db, job["id"])), None), 10, "the run to be recorded")
    assert run is not None
    ghost = Coordinator(stack.cluster.settings.zk_hosts, root="/zeitplan", session_timeout=4,
                        name="ghost")
    ghost.start()
    try:
        assert ghost.try_lock(f"job-{job['id']}", {"run_id": run["id"], "attempt": 1,
                                                   "worker": "ghost"})
        wait_for(lambda: run["id"] in _copies(stack), 15,
                 "the copy to reach a worker and find its attempt holding the lock")
        assert runs(db, job["id"])[0]["state"] == "queued"
    finally:
        ghost.stop()  # the session ends: the orphan lock goes with it
    wait_for(lambda: runs(db, job["id"])[0]["state"] == "succeeded", 30,
             "the run to be published again and run")
