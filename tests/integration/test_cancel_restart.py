"""A cancellation survives the restart of every worker: the retry of a cancelled run and
the queued runs of a cancelled job are dropped by workers started after the cancel, which
never heard its fanout message (their in-memory cancel list is empty, however short or
long its window): they know it from the durable marks alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from common import jobops
from common.db import Database
from common.devstack import Stack
from schedctl.services import Broadcast
from tests.integration.support import create, heal, ledger, ledger_command, runs, wait_for

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def stack_healed(stack: Stack) -> Iterator[Stack]:
    """The shared stack, with every daemon running again afterwards."""
    yield stack
    heal(stack)


def _kill_workers(stack: Stack) -> None:
    for worker in stack.workers:
        worker.proc.kill()


def _restart_workers(stack: Stack) -> None:
    for worker in stack.workers:
        worker.proc.start()
    for worker in stack.workers:
        stack.wait_healthy(worker, 60)


def _dropped(stack: Stack) -> set[tuple[int, int]]:
    """(run, attempt) of every delivery a worker dropped as cancelled, from their logs."""
    found = set()
    for worker in stack.workers:
        for line in worker.proc.log_path.read_text(errors="replace").splitlines():
            if '"attempt_dropped_cancelled"' in line:
                entry = json.loads(line)
                found.add((entry["run_id"], entry["attempt"]))
    return found


def _executed(book: Path) -> set[tuple[int, int]]:
    """(run, attempt) of every execution, from the jobs' ledger."""
    return {(run, attempt) for run, attempt, _, _ in ledger(book)}


def test_a_cancelled_run_waiting_for_its_retry_never_runs_again_after_every_worker_restarts(
        stack_healed: Stack, db: Database, tmp_path: Path) -> None:
    stack = stack_healed
    book = tmp_path / "ledger"
    job = create(db, "cancel-retry", command=ledger_command(book) + "; exit 1",
                 max_attempts=3, backoff_base_s=8.0)
    run = wait_for(lambda: [r for r in runs(db, job["id"]) if r["state"] == "retrying"], 30,
                   "the first attempt to fail")[0]
    _kill_workers(stack)  # the fanout message below reaches no worker
    # As `schedctl run cancel` without ZooKeeper hosts: the leader writes the mark from
    # the cancellation recorded in PostgreSQL (within about a second; the retry is due
    # eight seconds after the failure).
    jobops.cancel_run(db, run["id"], actor="test",
                      notify=Broadcast(list(stack.cluster.settings.amqp_urls)))
    _restart_workers(stack)
    # The retry comes back from its tier: a worker either drops it or executes it.
    wait_for(lambda: (run["id"], 2) in _dropped(stack) | _executed(book), 40,
             "the retry to come back to a worker")
    assert _executed(book) == {(run["id"], 1)}
    assert runs(db, job["id"])[0]["state"] == "cancelled"


def test_the_runs_of_a_cancelled_job_queued_before_the_cancel_never_run_on_restarted_workers(
        stack_healed: Stack, db: Database, tmp_path: Path) -> None:
    stack = stack_healed
    book = tmp_path / "ledger"
    _kill_workers(stack)  # runs pile up in the queue, unconsumed
    job = create(db, "cancel-queued", command=ledger_command(book), kind="every",
                 expr="every 1 second")

    def three_queued() -> list[int]:
        ids = [int(r["id"]) for r in runs(db, job["id"]) if r["state"] == "queued"]
        return ids if len(ids) >= 3 else []
    queued = wait_for(three_queued, 30, "three runs queued")
    # As `schedctl job cancel` with ZooKeeper hosts: the mark is written before it returns.
    jobops.cancel_job(db, str(job["id"]), actor="test",
                      notify=Broadcast(list(stack.cluster.settings.amqp_urls),
                                       stack.cluster.settings.zk_hosts))
    _restart_workers(stack)
    wait_for(lambda: {(r, 1) for r in queued} <= _dropped(stack) | _executed(book), 40,
             "every queued run to reach a restarted worker")
    assert _executed(book) == set()
    assert {r["id"]: r["state"] for r in runs(db, job["id"]) if r["id"] in queued} == \
        dict.fromkeys(queued, "cancelled")
