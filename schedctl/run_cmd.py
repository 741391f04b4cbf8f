"""`schedctl run`: list, show, logs, cancel, and a live view of the cluster's runs."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from common import jobops
from common.db import Database
from common.db import jobs as store
from schedctl.context import (
    actor,
    amqp_option,
    dsn_option,
    handle_errors,
    output_option,
    table,
    to_json,
    zk_option,
)
from schedctl.services import broadcaster, database

RUN_COLUMNS = ["id", "job_id", "scheduled_for", "attempt", "state", "started_at", "worker",
               "exit_code", "why"]
_SELECT = ("SELECT id, job_id, scheduled_for, due_at, attempt, state, trigger, queued_at, "
           "started_at, finished_at, worker, exit_code, error, reason, "
           "coalesce(reason, error) AS why FROM runs ")


@click.group()
def run() -> None:
    """Runs: list, show, logs, cancel, watch."""


@run.command("list")
@click.option("--job", "job_ref", metavar="JOB", help="Only this job's runs (id or name).")
@click.option("--state", help="Only runs in this state (e.g. dead, skipped, running).")
@click.option("-n", "--limit", default=50, show_default=True)
@dsn_option
@output_option
@handle_errors
def list_(job_ref: str | None, state: str | None, limit: int, dsn: str | None,
          output: str) -> None:
    """List runs, newest fire time first."""
    with database(dsn) as db, db.transaction() as conn:
        job_id = store.find(conn, job_ref)["id"] if job_ref else None
        rows = conn.execute(
            _SELECT + "WHERE (%s::bigint IS NULL OR job_id = %s) AND "
            "(%s::text IS NULL OR state = %s) ORDER BY scheduled_for DESC, id DESC LIMIT %s",
            (job_id, job_id, state, state, limit)).fetchall()
    click.echo(to_json(rows) if output == "json" else
               (table(rows, RUN_COLUMNS) if rows else "no runs"))


@run.command()
@click.argument("run_id", type=int)
@dsn_option
@output_option
@handle_errors
def show(run_id: int, dsn: str | None, output: str) -> None:
    """Show one run with every attempt."""
    with database(dsn) as db, db.transaction() as conn:
        row = conn.execute(_SELECT + "WHERE id = %s", (run_id,)).fetchone()
        if row is None:
            raise click.BadParameter(f"no run with id {run_id}", param_hint="RUN_ID")
        attempts = conn.execute("SELECT * FROM run_attempts WHERE run_id = %s ORDER BY attempt",
                                (run_id,)).fetchall()
    if output == "json":
        click.echo(to_json({**row, "attempts": attempts}))
        return
    for key, value in row.items():
        if key != "why":
            click.echo(f"{key}: {value if value is not None else '-'}")
    if attempts:
        click.echo(table(attempts, ["attempt", "state", "worker", "started_at", "finished_at",
                                    "exit_code", "error"]))


@run.command()
@click.argument("run_id", type=int)
@click.option("--attempt", type=int, help="Only this attempt (default: all).")
@click.option("--stream", type=click.Choice(["stdout", "stderr"]), help="Only this stream.")
@dsn_option
@handle_errors
def logs(run_id: int, attempt: int | None, stream: str | None, dsn: str | None) -> None:
    """Print a run's captured output."""
    with database(dsn) as db, db.transaction() as conn:
        chunks = conn.execute(
            "SELECT attempt, stream, data FROM run_logs WHERE run_id = %s "
            "AND (%s::int IS NULL OR attempt = %s) AND (%s::text IS NULL OR stream = %s) "
            "ORDER BY attempt, stream, seq", (run_id, attempt, attempt, stream, stream)
        ).fetchall()
    for chunk in chunks:
        sys.stdout.buffer.write(bytes(chunk["data"]))
    sys.stdout.flush()


@run.command()
@click.argument("run_id", type=int)
@dsn_option
@amqp_option
@zk_option
@output_option
@handle_errors
def cancel(run_id: int, dsn: str | None, amqp: str | None, zk: str | None,
           output: str) -> None:
    """Cancel a run: a pending one never starts, a running attempt is stopped."""
    notify = broadcaster(amqp, zk)
    with database(dsn) as db:
        row = jobops.cancel_run(db, run_id, actor=actor(), notify=notify)
    if row["state"] == "running" and (warning := notify.warning()):
        click.echo(warning, err=True)
    click.echo(to_json(row) if output == "json" else f"run {run_id}: {row['state']}"
               + (" (stop requested)" if row["state"] == "running" else ""))


def summary(db: Database) -> dict[str, Any]:
    """Counts by state over the last 10 minutes, the latest runs and the leader."""
    with db.transaction() as conn:
        counts = {r["state"]: r["n"] for r in conn.execute(
            "SELECT state, count(*) AS n FROM runs WHERE scheduled_for > now() - "
            "interval '10 minutes' GROUP BY state")}
        latest = conn.execute(
            "SELECT r.id, j.name, r.scheduled_for, r.attempt, r.state, r.worker, "
            "coalesce(r.reason, r.error) AS why FROM runs r JOIN jobs j ON j.id = r.job_id "
            "WHERE r.scheduled_for <= now() ORDER BY r.scheduled_for DESC, r.id DESC LIMIT 12"
        ).fetchall()
        leader = conn.execute("SELECT epoch, leader FROM cluster_epoch WHERE id = 1").fetchone()
    return {"counts": counts, "latest": latest, "leader": leader}


def render(view: dict[str, Any]) -> str:
    """The compact text of the live view."""
    leader = view["leader"] or {}
    counts = "  ".join(f"{k} {v}" for k, v in sorted(view["counts"].items())) or "none yet"
    lines = [f"{time.strftime('%H:%M:%S')}  leader {leader.get('leader') or '-'} "
             f"(epoch {leader.get('epoch', 0)})", f"last 10 min: {counts}", ""]
    lines.append(table(view["latest"], ["id", "name", "scheduled_for", "attempt", "state",
                                        "worker", "why"]))
    return "\n".join(lines)


@run.command()
@click.option("--interval", default=1.0, show_default=True, help="Seconds between refreshes.")
@click.option("--once", is_flag=True, help="Print one view and exit.")
@dsn_option
@handle_errors
def watch(interval: float, once: bool, dsn: str | None) -> None:
    """A live, compact view of the latest runs (Ctrl-C to stop)."""
    with database(dsn) as db:
        while True:
            text = render(summary(db))
            if once:
                click.echo(text)
                return
            click.clear()
            click.echo(text)
            time.sleep(interval)
