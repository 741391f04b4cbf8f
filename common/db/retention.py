"""Retention: finished runs and logs older than the configured age are deleted in batches.

The time indexes (`runs_finished`, `run_logs_at`, `audit_log_at`) make each batch an index
range scan, so pruning stays cheap however large the tables grow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from common.db import Connection


@dataclass(frozen=True)
class Pruned:
    """Rows deleted by one pass."""

    runs: int
    logs: int


def prune(conn: Connection, *, runs_age: timedelta, logs_age: timedelta,
          batch: int = 5000) -> Pruned:
    """Delete up to `batch` finished runs older than `runs_age` (their attempts and logs go
    with them) and up to `batch` log chunks older than `logs_age`."""
    logs = conn.execute(
        "DELETE FROM run_logs WHERE ctid = ANY(ARRAY(SELECT ctid FROM run_logs "
        "WHERE at < now() - %s LIMIT %s))", (logs_age, batch)).rowcount
    runs = conn.execute(
        "DELETE FROM runs WHERE id = ANY(ARRAY(SELECT id FROM runs WHERE finished_at < "
        "now() - %s LIMIT %s))", (runs_age, batch)).rowcount
    return Pruned(runs=runs, logs=logs)
