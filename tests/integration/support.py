"""Helpers for the pipeline tests: a running stack, jobs, ledgers and polling."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from common import broker as topo
from common import jobops
from common.broker import Broker
from common.db import Database
from common.db.migrate import migrate
from common.devcluster import LocalCluster
from common.devstack import Stack
from common.errors import MessageError
from common.jobs import JobSpec
from common.messages import RunMessage, StatusQueueMessage, decode, encode

T = TypeVar("T")
SESSION_TIMEOUT = 4.0


def wait_for(probe: Callable[[], T], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll `probe` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {value!r})")
        time.sleep(every)


def stack_fixture(cluster: LocalCluster, **options: Any) -> Iterator[Stack]:
    """A started stack on `cluster` (3 schedulers, 2 workers), stopped afterwards."""
    stack = Stack(cluster, cluster.state_dir, session_timeout=SESSION_TIMEOUT, **options)
    stack.start()
    yield stack
    stack.stop()


def scratch_database(cluster: LocalCluster) -> Iterator[str]:
    """A migrated database of its own on `cluster` (its DSN), dropped afterwards: for tests
    that must not disturb the shared stack's leader."""
    name = f"scratch_{uuid.uuid4().hex[:8]}"
    admin = cluster.settings.pg_dsn
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(admin)
    info["dbname"] = name
    dsn = psycopg.conninfo.make_conninfo(**info)
    migrate(dsn)
    yield dsn
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def heal(stack: Stack) -> None:
    """Restart any daemon a test killed or paused, and wait until all are healthy."""
    for daemon in stack.daemons:
        if daemon.proc.is_running():
            daemon.proc.resume()
        else:
            daemon.proc.start()
    for daemon in stack.daemons:
        stack.wait_healthy(daemon, 60)
    stack.wait_leader(30)


def create(db: Database, name: str, *, command: str, kind: str = "now", expr: str = "now",
           **fields: Any) -> dict[str, Any]:
    """Create a shell job."""
    spec = JobSpec(name=name, job_type="shell", payload={"command": command},
                   schedule_kind=kind, schedule_expr=expr, **fields)
    job, _ = jobops.create_job(db, spec, actor="test")
    return job


def ledger_command(path: Path, extra: str = "") -> str:
    """A shell command that appends 'run attempt start end' to a ledger file."""
    return (f'start=$(date +%s.%N); {extra} '
            f'echo "$ZEITPLAN_RUN_ID $ZEITPLAN_ATTEMPT $start $(date +%s.%N)" >> {path}')


def ledger(path: Path) -> list[tuple[int, int, float, float]]:
    """The ledger's lines as (run_id, attempt, start, end)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        run, attempt, start, end = line.split()
        out.append((int(run), int(attempt), float(start), float(end)))
    return out


def executions(path: Path) -> Counter[int]:
    """How many times each run id executed, per the ledger."""
    return Counter(run for run, _, _, _ in ledger(path))


def runs(db: Database, job_id: int) -> list[dict[str, Any]]:
    """A job's runs, oldest fire first."""
    with db.transaction() as conn:
        return conn.execute("SELECT * FROM runs WHERE job_id = %s ORDER BY scheduled_for",
                            (job_id,)).fetchall()


def first_state(db: Database, job_id: int) -> str | None:
    """The state of a job's first run (None before it has one)."""
    found = runs(db, job_id)
    return found[0]["state"] if found else None


def states(db: Database, job_ids: list[int]) -> Counter[str]:
    """Run states over several jobs."""
    with db.transaction() as conn:
        rows = conn.execute("SELECT state, count(*) AS n FROM runs WHERE job_id = ANY(%s) "
                            "GROUP BY state", (job_ids,)).fetchall()
    return Counter({r["state"]: r["n"] for r in rows})


def report(stack: Stack, *messages: StatusQueueMessage) -> None:
    """Publish messages on the status queue, in order, as a worker would."""
    broker = Broker(stack.cluster.settings.amqp_urls, name="test-status")
    broker.connect()
    try:
        for message in messages:
            broker.publish(topo.STATUS, topo.STATUS, encode(message))
    finally:
        broker.close()


def logged(db: Database, run_id: int, seq: int) -> bool:
    """Whether the status consumer has stored log chunk `seq` of a run (a marker that
    everything published before it was consumed)."""
    with db.transaction() as conn:
        return conn.execute("SELECT 1 FROM run_logs WHERE run_id = %s AND seq = %s",
                            (run_id, seq)).fetchone() is not None


def dead_letters(cluster: LocalCluster) -> list[RunMessage | bytes]:
    """Every letter the schedulers recorded from the dead-letter queue: parsed run
    messages, or raw bodies that do not parse as one."""
    with psycopg.connect(cluster.settings.pg_dsn) as conn:
        bodies = [bytes(row[0]) for row in conn.execute(
            "SELECT body FROM dead_letters ORDER BY id")]
    found: list[RunMessage | bytes] = []
    for body in bodies:
        try:
            message = decode(body)
            found.append(message if isinstance(message, RunMessage) else body)
        except MessageError:
            found.append(body)
    return found


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie has stopped running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[1][0] != "Z"
