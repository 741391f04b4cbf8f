"""Bad input on the running stack: malformed and oversized messages, hostile jobs."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from common import broker as topo
from common.broker import Broker
from common.db import Database
from common.devstack import Stack
from common.messages import MAX_MESSAGE_BYTES, StatusMessage, encode_batches
from common.states import RunState
from tests.integration.support import (
    alive,
    create,
    dead_letters,
    first_state,
    ledger_command,
    runs,
    wait_for,
)

pytestmark = pytest.mark.timeout(180)


def _publish(stack: Stack, exchange: str, routing_key: str, body: bytes,
             headers: dict[str, str] | None = None) -> None:
    broker = Broker(stack.cluster.settings.amqp_urls, name="test-bad-input")
    broker.connect()
    try:
        broker.publish(exchange, routing_key, body, headers=headers)
    finally:
        broker.close()


def test_garbage_on_every_queue_is_set_aside_and_work_goes_on(stack: Stack, db: Database,
                                                               tmp_path: Path) -> None:
    oversized = b'{"v": 1, "type": "run", "pad": "' + b"x" * MAX_MESSAGE_BYTES + b'"}'
    bodies = {
        "run": b"\xff\xfe not json",
        "oversized": oversized,
        "status": b'{"v": 1, "type": "status", "run_id": null}',
        "retry": b"[1, 2, 3]",
    }
    _publish(stack, topo.RUNS, "default.low", bodies["run"])
    _publish(stack, topo.RUNS, "default.normal", bodies["oversized"])
    _publish(stack, topo.STATUS, topo.STATUS, bodies["status"])
    _publish(stack, topo.RETRY, "default.normal", bodies["retry"], headers={"tier": "1"})
    _publish(stack, topo.CONTROL, "", b"not a cancel message")
    book = tmp_path / "after"
    job = create(db, "after-garbage-everywhere", command=ledger_command(book))
    wait_for(lambda: first_state(db, job["id"]) == "succeeded", 30, "a job after the garbage")
    found: list[object] = []
    wait_for(lambda: found.extend(dead_letters(stack.cluster)) or all(
        body in found for body in bodies.values()), 20, "every bad message dead-lettered")
    assert all(d.proc.is_running() for d in stack.daemons)


def test_a_nul_character_in_a_status_report_is_stored_replaced_and_work_goes_on(
        stack: Stack, db: Database) -> None:
    # A run parked in a pool no worker serves, then reported cancelled with NULs in its text
    # (PostgreSQL text cannot hold one: the report must not stop the status queue).
    parked = create(db, "parked-in-an-idle-pool", command="true", pool="nobody-serves-this")
    wait_for(lambda: first_state(db, parked["id"]) == "queued", 30, "the parked run queued")
    run = runs(db, parked["id"])[0]
    report = StatusMessage(run_id=run["id"], attempt=1, state=RunState.CANCELLED,
                           at=datetime.now(UTC), worker="w\x00", error="bad\x00error",
                           reason="bad\x00reason")
    _publish(stack, topo.STATUS, topo.STATUS, encode_batches([report])[0])
    wait_for(lambda: first_state(db, parked["id"]) == "cancelled", 30, "the report applied")
    stored = runs(db, parked["id"])[0]
    assert (stored["worker"], stored["error"], stored["reason"]) == (
        "w\ufffd", "bad\ufffderror", "bad\ufffdreason")
    after = create(db, "after-a-nul-report", command="true")
    wait_for(lambda: first_state(db, after["id"]) == "succeeded", 30, "a job after it")


def test_huge_binary_output_is_capped_and_the_run_succeeds(stack: Stack, db: Database) -> None:
    job = create(db, "noisy", command="head -c 5000000 /dev/urandom; echo done >&2")
    wait_for(lambda: first_state(db, job["id"]) == "succeeded", 60, "the noisy job")
    run = runs(db, job["id"])[0]

    def stored() -> dict[str, int]:
        # Output chunks may be committed by another scheduler just after the final state.
        with db.transaction() as conn:
            rows = conn.execute("SELECT stream, sum(length(data)) AS n FROM run_logs "
                                "WHERE run_id = %s GROUP BY stream", (run["id"],)).fetchall()
        return {r["stream"]: r["n"] for r in rows}
    sizes = wait_for(lambda: (found := stored()) and len(found) == 2
                     and found["stdout"] >= 1024 * 1024 and found, 20, "the output chunks")
    with db.transaction() as conn:
        tail = conn.execute("SELECT data FROM run_logs WHERE run_id = %s AND stream = 'stdout' "
                            "ORDER BY seq DESC LIMIT 1", (run["id"],)).fetchone()
    assert 1024 * 1024 <= sizes["stdout"] < 1024 * 1024 + 4096
    assert tail is not None and b"output truncated" in bytes(tail["data"])
    assert sizes["stderr"] == len(b"done\n")


def test_a_job_that_leaves_a_daemon_behind_finishes_and_the_daemon_is_stopped(
        stack: Stack, db: Database, tmp_path: Path) -> None:
    pid_file = tmp_path / "daemon.pid"
    job = create(db, "forks", command=f"(sleep 300 & echo $! > {pid_file}); echo parent done")
    wait_for(lambda: first_state(db, job["id"]) == "succeeded", 20, "the job to finish")
    pid = int(pid_file.read_text())
    wait_for(lambda: not alive(pid), 10, "the left-behind process to be stopped")


def test_a_job_that_ignores_sigterm_is_killed_at_its_timeout(stack: Stack, db: Database,
                                                             tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    job = create(db, "stubborn", command=f"trap '' TERM; echo $$ > {pid_file}; "
                 "while true; do sleep 0.1; done", timeout_s=1.0)
    began = time.monotonic()
    wait_for(lambda: first_state(db, job["id"]) == "dead", 30, "the timeout (no attempts left)")
    pid = int(pid_file.read_text())
    wait_for(lambda: not alive(pid), 10, "the stubborn process to die")
    print(f"timed out and killed after {time.monotonic() - began:.1f} s (grace 5 s)")
    run = runs(db, job["id"])[0]
    assert "timed out" in (run["error"] or "")
    with db.transaction() as conn:
        attempt = conn.execute("SELECT state FROM run_attempts WHERE run_id = %s",
                               (run["id"],)).fetchone()
    assert attempt is not None and attempt["state"] == "timed_out"
