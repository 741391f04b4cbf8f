"""Numbered SQL migrations: versioned, each in its own transaction, safe to run twice."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from common.db import connect_once
from common.errors import DatabaseError

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Serialises concurrent `db migrate` runs (any constant shared by all of them).
_LOCK_KEY = 0x7A656974


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """The migrations shipped with the package, in version order."""
    found = []
    for entry in resources.files("common.db.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def applied(dsn: str) -> list[int]:
    """The versions already applied to the database at `dsn`."""
    with connect_once(dsn) as conn:
        _ensure_table(conn)
        return [row["version"] for row in conn.execute(
            "SELECT version FROM schema_migrations ORDER BY version")]


def migrate(dsn: str) -> list[Migration]:
    """Apply every pending migration; returns the ones applied now (empty when up to date)."""
    done: list[Migration] = []
    with connect_once(dsn) as conn:
        _ensure_table(conn)
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
            current = {row["version"] for row in conn.execute(
                "SELECT version FROM schema_migrations")}
            for migration in available():
                if migration.version in current:
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name))
                done.append(migration)
        except psycopg.Error as exc:
            raise DatabaseError(f"migration failed: {str(exc).strip()}") from exc
        finally:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return done


def _ensure_table(conn: psycopg.Connection[dict[str, object]]) -> None:
    try:
        conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
            version integer PRIMARY KEY, name text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())""")
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot prepare the migrations table: {exc}") from exc
