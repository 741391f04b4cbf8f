"""The durable list of cancellations (table `cancellations`, see common/cancels.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from common.db import Connection


def record(conn: Connection, kind: str, target: int) -> None:
    """Add a cancellation of a run or job (a second one keeps the first's time)."""
    conn.execute("INSERT INTO cancellations (kind, target_id) VALUES (%s, %s) "
                 "ON CONFLICT DO NOTHING", (kind, target))


def current(conn: Connection, keep: timedelta) -> list[tuple[str, int]]:
    """(kind, id) of every cancellation made within `keep`."""
    rows = conn.execute("SELECT kind, target_id FROM cancellations "
                        "WHERE cancelled_at > now() - %s", (keep,)).fetchall()
    return [(r["kind"], r["target_id"]) for r in rows]


def expired(conn: Connection, keep: timedelta, limit: int) -> list[tuple[str, int]]:
    """(kind, id) of up to `limit` cancellations older than `keep`, oldest first."""
    rows = conn.execute("SELECT kind, target_id FROM cancellations "
                        "WHERE cancelled_at <= now() - %s ORDER BY cancelled_at LIMIT %s",
                        (keep, limit)).fetchall()
    return [(r["kind"], r["target_id"]) for r in rows]


def forget(conn: Connection, found: Sequence[tuple[str, int]]) -> None:
    """Delete these cancellations (their marks are gone)."""
    if found:
        conn.execute("DELETE FROM cancellations c USING unnest(%s::text[], %s::bigint[]) "
                     "AS t(kind, target_id) WHERE c.kind = t.kind AND c.target_id = "
                     "t.target_id", ([k for k, _ in found], [t for _, t in found]))
