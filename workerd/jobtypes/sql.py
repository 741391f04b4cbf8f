"""The sql job type: one statement (or a script) on a PostgreSQL the worker's config names.

The payload carries only a DSN name; the DSN, with its credentials, stays in the worker's
configuration, and a job may name only the DSNs its pool is given there (`sql.pools`);
any other name fails the attempt without connecting. A watcher thread cancels the
statement on the server when the run is cancelled or times out; statement_timeout backs it
up on the server side.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from workerd.jobtypes import (
    Deadline,
    JobContext,
    Outcome,
    Stop,
    checked_payload,
    stop_reason,
    stopped,
    wait_until_done,
)
from workerd.output import CappedOutput

_FETCH_BATCH = 500


class SqlJob:
    """Runs sql payloads: {"dsn_name": a name the job's pool may use, "statement": str}."""

    def run(self, ctx: JobContext) -> Outcome:
        """Execute the statement with autocommit; emit the rows or the rows affected on stdout."""
        payload = checked_payload("sql", ctx)
        if isinstance(payload, Outcome):
            return payload
        name = payload["dsn_name"]
        dsn = ctx.sql_dsns.get(name)
        if dsn is None:
            allowed = ", ".join(repr(n) for n in sorted(ctx.sql_dsns)) or "none"
            return Outcome(
                "failed",
                error=f"DSN name {name!r} is not allowed for pool {ctx.pool!r} on this worker"
                f" (its 'sql.pools' entry allows: {allowed})",
            )
        deadline = Deadline(ctx.timeout)
        reason = stop_reason(ctx, deadline)
        if reason is not None:
            return stopped(reason, deadline)
        try:
            conn = psycopg.connect(dsn, autocommit=True, **_connect_timeout(deadline))
        except psycopg.Error as exc:
            return Outcome("failed", error=f"cannot connect to {name!r}: {_first_line(exc)}")
        with conn:
            return _execute(conn, payload["statement"], ctx, deadline)


def _connect_timeout(deadline: Deadline) -> dict[str, Any]:
    remaining = deadline.remaining()
    # libpq counts whole seconds and treats anything under 2 as 2.
    return {} if remaining is None else {"connect_timeout": max(2, math.ceil(remaining))}


def _execute(
    conn: psycopg.Connection[Any], statement: str, ctx: JobContext, deadline: Deadline
) -> Outcome:
    out = CappedOutput(ctx.emit, ctx.output_limit)
    finished = threading.Event()
    reasons: list[Stop] = []

    def watch() -> None:
        reason = wait_until_done(finished, ctx, deadline)
        if reason is not None:
            reasons.append(reason)
            conn.cancel()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    error: psycopg.Error | None = None
    try:
        with conn.cursor() as cur:
            remaining = deadline.remaining()
            if remaining is not None:
                timeout_ms = max(1, math.ceil(remaining * 1000))
                cur.execute(f"SET statement_timeout = {timeout_ms}")
            cur.execute(statement)  # no parameters: a script of several statements works too
            _emit_results(cur, out)
    except psycopg.Error as exc:
        error = exc
    finally:
        finished.set()
        watcher.join()
    if error is None:
        return Outcome("succeeded")
    if reasons:
        return stopped(reasons[0], deadline)
    if isinstance(error, pgerrors.QueryCanceled) and deadline.expired():
        return stopped("timed_out", deadline)
    return Outcome("failed", error=f"{type(error).__name__}: {_first_line(error)}")


def _emit_results(cur: psycopg.Cursor[Any], out: CappedOutput) -> None:
    while True:
        if cur.description is None:
            out.write("stdout", f"{_affected(cur)}\n".encode())
        else:
            out.write("stdout", ("\t".join(c.name for c in cur.description) + "\n").encode())
            count = 0
            while rows := cur.fetchmany(_FETCH_BATCH):
                count += len(rows)
                if not out.full("stdout"):
                    lines = "".join("\t".join(map(_cell, row)) + "\n" for row in rows)
                    out.write("stdout", lines.encode())
            out.write("stdout", f"({count} row{'' if count == 1 else 's'})\n".encode())
        if not cur.nextset():
            return


def _affected(cur: psycopg.Cursor[Any]) -> str:
    if cur.rowcount < 0:  # DDL and utility statements report no count, only their tag
        return cur.statusmessage or "done"
    return f"{cur.rowcount} row{'' if cur.rowcount == 1 else 's'} affected"


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    return str(value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
