"""Retention: finished runs, logs, audit rows and dead letters older than their configured
age are deleted in batches.

The time indexes (`runs_finished`, `run_logs_at`, `audit_log_at`, `dead_letters_received`)
make each batch an index range scan, so pruning stays cheap however large the tables grow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from psycopg import sql

from common.db import Connection


@dataclass(frozen=True)
class Pruned:
    """Rows deleted by one pass."""

    runs: int
    logs: int
    audit: int
    dead_letters: int

    def full(self, batch: int) -> bool:
        """Whether some table gave a whole batch (more may be left to delete)."""
        return max(self.runs, self.logs, self.audit, self.dead_letters) >= batch


def prune(conn: Connection, *, runs_age: timedelta, logs_age: timedelta,
          batch: int = 5000) -> Pruned:
    """Delete up to `batch` finished runs older than `runs_age` (their attempts and logs go
    with them), up to `batch` log chunks older than `logs_age`, and up to `batch` audit rows
    and dead letters older than `runs_age` (the history they explain is gone by then)."""
    return Pruned(logs=_delete(conn, "run_logs", "ctid", "at", logs_age, batch),
                  runs=_delete(conn, "runs", "id", "finished_at", runs_age, batch),
                  audit=_delete(conn, "audit_log", "id", "at", runs_age, batch),
                  dead_letters=_delete(conn, "dead_letters", "id", "received_at", runs_age,
                                       batch))


def _delete(conn: Connection, table: str, key: str, time_column: str, age: timedelta,
            batch: int) -> int:
    """Delete up to `batch` rows of `table` whose `time_column` is older than `age`."""
    names = {"t": sql.Identifier(table), "k": sql.Identifier(key),
             "c": sql.Identifier(time_column)}
    return conn.execute(sql.SQL(
        "DELETE FROM {t} WHERE {k} = ANY(ARRAY(SELECT {k} FROM {t} "
        "WHERE {c} < now() - %s LIMIT %s))").format(**names), (age, batch)).rowcount
