"""`schedctl job`: create, list, show, update, pause, resume, cancel, run now."""

from __future__ import annotations

from typing import Any

import click

from common import jobops
from common.db import jobs as store
from common.errors import InvalidInput
from common.jobs import JobSpec, validate
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
from schedctl.job_options import (
    POLICY_OPTIONS,
    SCHEDULE_OPTIONS,
    TARGET_OPTIONS,
    apply_options,
    policy_fields,
    schedule_fields,
    target_fields,
)
from schedctl.services import broadcaster, database

JOB_COLUMNS = ["id", "name", "job_type", "schedule", "state", "next_fire_at", "version"]


@click.group()
def job() -> None:
    """Jobs: create, list, show, update, pause, resume, cancel, run-now."""


def _schedule(row: dict[str, Any]) -> str:
    expr = row["schedule_expr"]
    return expr if expr.startswith(row["schedule_kind"]) else f"{row['schedule_kind']} {expr}"


def _print_job(row: dict[str, Any], output: str, verb: str = "") -> None:
    if output == "json":
        click.echo(to_json(row))
        return
    schedule = _schedule(row)
    if row["time_zone"] != "UTC":
        schedule += f" ({row['time_zone']})"
    next_fire = row["next_fire_at"].isoformat() if row["next_fire_at"] else "none"
    click.echo(f"{verb}job {row['id']} {row['name']!r}: {row['job_type']}, {schedule}, "
               f"{row['state']}, next fire {next_fire}")


@job.command()
@click.option("--name", required=True, help="A name for people (need not be unique).")
@apply_options(TARGET_OPTIONS)
@apply_options(SCHEDULE_OPTIONS)
@apply_options(POLICY_OPTIONS)
@click.option("--idempotency-key", metavar="KEY",
              help="Creating again with the same key returns the existing job.")
@dsn_option
@output_option
@handle_errors
def create(name: str, dsn: str | None, output: str, idempotency_key: str | None,
           **options: Any) -> None:
    """Create a job. Exactly one target (--shell, --argv, --http, --sql, --python) and one
    schedule (--now, --at, --cron, --every).

    \b
    Examples:
      schedctl job create --name nightly --shell 'pg_dump app > /backup/app.sql' \\
          --cron '0 2 * * *' --tz Europe/Berlin --max-attempts 3 --concurrency forbid
      schedctl job create --name ping --http https://example.com/health --every '5 minutes'
      schedctl job create --name once --shell 'echo hi' --at 2030-01-01T09:00:00+01:00
    """
    target = target_fields(options)
    if not target:
        raise InvalidInput("give a target: --shell, --argv, --http, --sql or --python")
    schedule = schedule_fields(options)
    if "schedule_kind" not in schedule:
        raise InvalidInput("give a schedule: --now, --at, --cron or --every")
    spec = JobSpec(name=name, **target, **schedule, **policy_fields(options),
                   idempotency_key=idempotency_key)
    validate(spec, now=jobops.now_utc())  # bad input is reported before connecting
    with database(dsn) as db:
        row, created = jobops.create_job(db, spec, actor=actor())
    _print_job(row, output, "created " if created else "exists: ")


@job.command("list")
@click.option("--state", type=click.Choice(["active", "paused", "cancelled", "completed"]))
@click.option("-n", "--limit", default=100, show_default=True, help="At most this many.")
@dsn_option
@output_option
@handle_errors
def list_(state: str | None, limit: int, dsn: str | None, output: str) -> None:
    """List jobs, oldest first."""
    with database(dsn) as db, db.transaction() as conn:
        rows = store.list_jobs(conn, state=state, limit=limit)
    if output == "json":
        click.echo(to_json(rows))
        return
    for row in rows:
        row["schedule"] = _schedule(row)
    click.echo(table(rows, JOB_COLUMNS) if rows else "no jobs")


@job.command()
@click.argument("ref")
@dsn_option
@output_option
@handle_errors
def show(ref: str, dsn: str | None, output: str) -> None:
    """Show one job (by id or name) with its latest runs."""
    with database(dsn) as db, db.transaction() as conn:
        row = store.find(conn, ref)
        runs = conn.execute(
            "SELECT id, scheduled_for, attempt, state, started_at, finished_at, worker, "
            "exit_code, coalesce(reason, error) AS why FROM runs WHERE job_id = %s "
            "ORDER BY scheduled_for DESC LIMIT 10", (row["id"],)).fetchall()
    if output == "json":
        click.echo(to_json({**row, "recent_runs": runs}))
        return
    _print_job(row, output)
    for key in ("payload", "priority", "pool", "max_attempts", "concurrency", "misfire",
                "timeout_s", "consecutive_failures"):
        click.echo(f"  {key}: {row[key]}")
    click.echo(table(runs, ["id", "scheduled_for", "attempt", "state", "worker", "exit_code",
                            "why"]) if runs else "  no runs yet")


@job.command()
@click.argument("ref")
@apply_options(TARGET_OPTIONS)
@apply_options(SCHEDULE_OPTIONS)
@apply_options(POLICY_OPTIONS)
@click.option("--name", help="New name.")
@click.option("--version", "expected_version", type=int,
              help="Refuse unless the job is still at this version (optimistic update).")
@dsn_option
@output_option
@handle_errors
def update(ref: str, name: str | None, expected_version: int | None, dsn: str | None,
           output: str, **options: Any) -> None:
    """Change a job; the change takes effect from its next fire. Only given options change."""
    changes = {**target_fields(options), **schedule_fields(options), **policy_fields(options)}
    if name:
        changes["name"] = name
    if not changes:
        raise InvalidInput("nothing to change: give at least one option")
    with database(dsn) as db:
        row = jobops.update_job(db, ref, changes, actor=actor(),
                                expected_version=expected_version)
    _print_job(row, output, "updated ")


def _state_command(name: str, doc: str) -> None:
    @job.command(name, help=doc)
    @click.argument("ref")
    @dsn_option
    @amqp_option
    @zk_option
    @output_option
    @handle_errors
    def command(ref: str, dsn: str | None, amqp: str | None, zk: str | None,
                output: str) -> None:
        with database(dsn) as db:
            if name == "pause":
                row = jobops.pause_job(db, ref, actor=actor())
            elif name == "resume":
                row = jobops.resume_job(db, ref, actor=actor())
            else:
                notify = broadcaster(amqp, zk)
                row = jobops.cancel_job(db, ref, actor=actor(), notify=notify)
                if warning := notify.warning():
                    click.echo(warning, err=True)
        _print_job(row, output, f"{name}: ")


_state_command("pause", "Pause a job: it does not fire until resumed.")
_state_command("resume", "Resume a paused job; missed fires follow its misfire policy.")
_state_command("cancel", "Cancel a job for good; its running attempt is stopped.")


@job.command("run-now")
@click.argument("ref")
@dsn_option
@output_option
@handle_errors
def run_now(ref: str, dsn: str | None, output: str) -> None:
    """Run a job once now, besides its schedule."""
    with database(dsn) as db:
        row = jobops.run_now(db, ref, actor=actor())
    click.echo(to_json(row) if output == "json" else
               f"run {row['id']} of job {row['job_id']} due now")
