"""`schedctl db`: schema migrations."""

from __future__ import annotations

import click

from common.db import migrate as migrations
from schedctl.context import dsn_option, handle_errors, require


@click.group()
def db() -> None:
    """Database schema: migrate, status."""


@db.command()
@dsn_option
@handle_errors
def migrate(dsn: str | None) -> None:
    """Apply pending schema migrations (safe to run again: it only applies what is new).

    Example: schedctl db migrate --dsn 'host=127.0.0.1 port=5432 dbname=zeitplan'
    """
    applied = migrations.migrate(require(dsn, "dsn", "ZEITPLAN_PG_DSN"))
    for m in applied:
        click.echo(f"applied {m.version:04d}_{m.name}")
    click.echo("schema is up to date" + ("" if applied else " (nothing to apply)"))


@db.command()
@dsn_option
@handle_errors
def status(dsn: str | None) -> None:
    """List migrations and whether each is applied."""
    done = set(migrations.applied(require(dsn, "dsn", "ZEITPLAN_PG_DSN")))
    for m in migrations.available():
        click.echo(f"{m.version:04d}_{m.name}: {'applied' if m.version in done else 'pending'}")
