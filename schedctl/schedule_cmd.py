"""`schedctl schedule`: try schedule expressions before putting them in a job."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, cast

import click

from common.errors import InvalidInput
from common.schedule import DstPolicy, fire_times, parse_instant, parse_schedule
from common.schedule.base import AmbiguousPolicy, NonexistentPolicy, load_zone


class _OneLineErrors(click.Command):
    """Report bad options as one `error: ...` line with exit code 2, like other bad input."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            ctx.exit(2)


@click.group()
def schedule() -> None:
    """Inspect schedule expressions: cron, intervals, one-off times."""


@schedule.command(cls=_OneLineErrors)
@click.argument("expr")
@click.option(
    "--tz",
    default="UTC",
    show_default=True,
    metavar="ZONE",
    help="IANA time zone the schedule runs in; also the zone fires are printed in.",
)
@click.option(
    "--from",
    "start",
    metavar="INSTANT",
    help="List fires at or after this ISO 8601 time (no offset: read in --tz). Default: now.",
)
@click.option(
    "-n", "count", type=click.IntRange(1, 1000), default=10, show_default=True, help="Fires."
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: a description, then one fire per line; json: one object.",
)
@click.option(
    "--kind",
    type=click.Choice(["now", "at", "cron", "every"]),
    help="Schedule kind. Default: detected from EXPR.",
)
@click.option(
    "--nonexistent",
    type=click.Choice(["shift", "skip"]),
    default="shift",
    show_default=True,
    help="Local times skipped by DST: fire when the gap ends, or skip them.",
)
@click.option(
    "--ambiguous",
    type=click.Choice(["once", "twice"]),
    default="once",
    show_default=True,
    help="Local times repeated by DST: fire at the first occurrence, or at both.",
)
@click.option("--allow-past", is_flag=True, help="Accept a one-off time in the past: run it now.")
@click.pass_context
def preview(
    ctx: click.Context,
    expr: str,
    tz: str,
    start: str | None,
    count: int,
    output: str,
    kind: str | None,
    nonexistent: str,
    ambiguous: str,
    allow_past: bool,
) -> None:
    """Print the next fire times of EXPR, in the local time of --tz.

    EXPR is one of: a cron expression with 5 fields (minute hour day-of-month month
    day-of-week) or 6 with SECONDS FIRST, or a macro such as @daily (day-of-month also
    takes L, the last day, LW, the last weekday, and 15W, the weekday nearest the 15th;
    day-of-week takes 5L, the last Friday, and 5#3, the third Friday); an interval
    ("every 5 minutes", "every 30s", PT1H30M), anchored at --from; an ISO 8601 time
    for a one-off run; or "now". Quote EXPR when it contains spaces or '*'.

    \b
    Examples:
      schedctl schedule preview '*/15 9-17 * * MON-FRI' --tz Europe/Berlin
      schedctl schedule preview '30 2 * * *' --tz America/New_York --from 2026-03-07 -n 3
      schedctl schedule preview '*/10 * * * * *' -n 5    # every 10 s: seconds come first
      schedctl schedule preview '0 9 LW * *'              # 09:00 on each month's last weekday
      schedctl schedule preview 'every 90 minutes' -o json
      schedctl schedule preview 2026-12-01T09:30:00 --tz Europe/Berlin
    """
    try:
        zone = load_zone(tz)
        now = (
            datetime.now(UTC).replace(microsecond=0) if start is None else parse_instant(start, tz)
        )
        parsed = parse_schedule(
            expr,
            kind=kind,
            tz=tz,
            dst=DstPolicy(cast(NonexistentPolicy, nonexistent), cast(AmbiguousPolicy, ambiguous)),
            now=now,
            allow_past=allow_past,
        )
        fires = [f.astimezone(zone).isoformat() for f in fire_times(parsed, now, count)]
    except InvalidInput as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(2)
    if output == "json":
        document: dict[str, Any] = {
            "schedule": parsed.describe(),
            "kind": parsed.kind,
            "tz": tz,
            "fires": fires,
        }
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(parsed.describe())
    for fire in fires:
        click.echo(fire)
