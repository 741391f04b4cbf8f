import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from common.devcluster.ports import free_ports
from workerd.jobtypes import JobContext, Outcome, RunKey
from workerd.jobtypes.sql import SqlJob

pytestmark = pytest.mark.integration

PG_BIN = "/usr/lib/postgresql/15/bin"
KEY = RunKey(run_id=1, job_id=2, scheduled_for=datetime(2024, 5, 1, tzinfo=UTC), attempt=1)


def free_port() -> int:
    return free_ports(1)[0]


def as_postgres(*argv: str) -> None:
    # PostgreSQL refuses to run as root.
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *argv], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def dsn(request: pytest.FixtureRequest) -> Iterator[str]:
    """A throwaway PostgreSQL on a unix socket; its directory is kept if a test fails."""
    root = tempfile.mkdtemp(prefix="zeitplan-sqljob-")
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        os.chown(root, postgres.pw_uid, postgres.pw_gid)
    data, log, port = f"{root}/data", f"{root}/postgres.log", free_port()
    failures_before = request.session.testsfailed
    as_postgres(f"{PG_BIN}/initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync")
    options = f"-p {port} -k {root} -c listen_addresses='' -c fsync=off"
    as_postgres(f"{PG_BIN}/pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "start")
    try:
        conninfo = f"host={root} port={port} user=postgres dbname=postgres"
        wait_for_connection(conninfo, log)
        yield conninfo
    finally:
        as_postgres(f"{PG_BIN}/pg_ctl", "-D", data, "-m", "immediate", "stop")
        if request.session.testsfailed == failures_before:
            shutil.rmtree(root)
        else:
            print(f"PostgreSQL directory and log kept in {root}")


def wait_for_connection(conninfo: str, log: str) -> None:
    give_up = time.monotonic() + 30
    while True:
        try:
            psycopg.connect(conninfo, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > give_up:
                with open(log) as lines:
                    raise RuntimeError(f"PostgreSQL did not start:\n{lines.read()}") from None
            time.sleep(0.1)


class Recorder:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def __call__(self, stream: str, chunk: bytes) -> None:
        assert stream == "stdout"
        self.chunks.append(chunk)


def context(dsn: str, statement: str, timeout: float | None = 10.0, **kw: Any) -> JobContext:
    payload = {"dsn_name": "main", "statement": statement}
    return JobContext(KEY, payload, timeout, threading.Event(), Recorder(), {"main": dsn}, **kw)


def run(dsn: str, statement: str, **kw: Any) -> tuple[Outcome, bytes]:
    ctx = context(dsn, statement, **kw)
    outcome = SqlJob().run(ctx)
    assert isinstance(ctx.emit, Recorder)
    return outcome, b"".join(ctx.emit.chunks)


def test_a_select_emits_its_rows(dsn: str) -> None:
    outcome, out = run(dsn, "SELECT 1 AS n, 'x' AS s, NULL AS z, '\\xff'::bytea AS b")
    assert outcome == Outcome("succeeded")
    assert out == b"n\ts\tz\tb\n1\tx\tNULL\t\\xff\n(1 row)\n"


def test_a_change_emits_the_rows_affected_and_is_committed(dsn: str) -> None:
    script = "CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 3)"
    outcome, out = run(dsn, script)
    assert outcome == Outcome("succeeded")
    assert out == b"CREATE TABLE\n3 rows affected\n"
    assert run(dsn, "SELECT count(*) FROM t")[1] == b"count\n3\n(1 row)\n"


def test_a_dsn_name_its_pool_may_not_use_fails_without_connecting(dsn: str) -> None:
    ctx = context(dsn, "SELECT 1", pool="batch")
    ctx.sql_dsns = {"reports": dsn}
    outcome = SqlJob().run(ctx)
    assert outcome == Outcome(
        "failed",
        error="DSN name 'main' is not allowed for pool 'batch' on this worker"
        " (its 'sql.pools' entry allows: 'reports')",
    )


def test_a_database_that_cannot_be_reached_fails_with_a_short_error(dsn: str) -> None:
    outcome, _ = run(dsn.replace("port=", f"port={free_port()} old_port="), "SELECT 1")
    assert outcome.state == "failed"
    assert outcome.error is not None and outcome.error.startswith("cannot connect to 'main': ")


def test_a_failing_statement_fails_with_the_server_error(dsn: str) -> None:
    outcome, _ = run(dsn, "SELECT * FROM no_such_table")
    assert outcome == Outcome(
        "failed", error='UndefinedTable: relation "no_such_table" does not exist'
    )


def test_a_slow_statement_times_out(dsn: str) -> None:
    started = time.monotonic()
    outcome, _ = run(dsn, "SELECT pg_sleep(30)", timeout=0.5)
    assert outcome == Outcome("timed_out", error="timed out after 0.5 s")
    assert time.monotonic() - started < 3


def test_a_cancel_stops_the_statement_on_the_server(dsn: str) -> None:
    ctx = context(dsn, "SELECT pg_sleep(30)", timeout=None)
    threading.Timer(0.3, ctx.cancel.set).start()
    started = time.monotonic()
    assert SqlJob().run(ctx) == Outcome("cancelled", error="cancelled")
    assert time.monotonic() - started < 2


def test_many_rows_are_capped(dsn: str) -> None:
    outcome, out = run(dsn, "SELECT generate_series(1, 100000) AS n", output_limit=20)
    assert outcome == Outcome("succeeded")
    assert out == b"n\n1\n2\n3\n4\n5\n6\n7\n8\n9\n\n[zeitplan: output truncated after 20 bytes]\n"
