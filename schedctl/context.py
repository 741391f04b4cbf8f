"""What every schedctl command shares: connection settings, output and error handling."""

from __future__ import annotations

import functools
import getpass
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click

from common.errors import InvalidInput, ServiceError, ZeitplanError

F = TypeVar("F", bound=Callable[..., Any])

dsn_option = click.option(
    "--dsn", envvar="ZEITPLAN_PG_DSN", metavar="DSN",
    help="PostgreSQL DSN (default: $ZEITPLAN_PG_DSN, as printed by `schedctl dev up`).")
amqp_option = click.option(
    "--amqp", envvar="ZEITPLAN_AMQP_URLS", metavar="URLS",
    help="Comma-separated AMQP URLs, for cancelling running attempts "
         "(default: $ZEITPLAN_AMQP_URLS).")
zk_option = click.option(
    "--zk", envvar="ZEITPLAN_ZK_HOSTS", metavar="HOSTS",
    help="ZooKeeper hosts, for marking a cancellation for the workers at once (without, the "
         "leader marks it within about a second; default: $ZEITPLAN_ZK_HOSTS).")
output_option = click.option("-o", "--output", type=click.Choice(["text", "json"]),
                             default="text", show_default=True, help="Output format.")


def actor() -> str:
    """Who is acting, for the audit log."""
    return f"cli:{os.environ.get('ZEITPLAN_ACTOR') or getpass.getuser()}"


def require(value: str | None, what: str, env: str) -> str:
    """A setting that must be given, or a usage error naming the flag and variable."""
    if not value:
        raise click.UsageError(f"no {what}: pass --{what.split()[0].lower()} or set ${env} "
                               "(`eval \"$(schedctl dev up --detach)\"` sets it)")
    return value


def handle_errors(fn: F) -> F:
    """Turn Zeitplan errors into one line on stderr and an exit code (2: input, 1: service)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InvalidInput as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except (ServiceError, ZeitplanError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
    return wrapper  # type: ignore[return-value]


def to_json(value: Any) -> str:
    """JSON with datetimes as ISO 8601."""
    def default(obj: Any) -> Any:
        if isinstance(obj, datetime):
            return obj.isoformat()
        if isinstance(obj, bytes | memoryview):
            return bytes(obj).decode("utf-8", "replace")
        return str(obj)
    return json.dumps(value, default=default, indent=2, sort_keys=True)


def when(value: datetime | None) -> str:
    """A timestamp for tables (ISO 8601 to the second, or '-')."""
    return value.isoformat(timespec="seconds") if value else "-"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return when(value) if isinstance(value, datetime) else str(value)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain aligned text table."""
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)
