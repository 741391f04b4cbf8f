"""The fencing token: leadership epochs recorded in PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass

from common.db import Connection
from common.errors import FencedOut


@dataclass(frozen=True)
class Term:
    """A leadership term as recorded in the database."""

    epoch: int
    leader: str


def claim(conn: Connection, epoch: int, leader: str) -> Term:
    """Record `epoch` as current if it is larger than the recorded one.

    Returns the term it replaced; raises FencedOut when a larger epoch is already recorded.
    """
    before = conn.execute("SELECT epoch, leader FROM cluster_epoch WHERE id = 1 FOR UPDATE"
                          ).fetchone()
    assert before is not None
    if before["epoch"] >= epoch:
        raise FencedOut(f"epoch {epoch} is not newer than the recorded {before['epoch']} "
                        f"({before['leader']})")
    conn.execute("UPDATE cluster_epoch SET epoch = %s, leader = %s, since = now() "
                 "WHERE id = 1", (epoch, leader))
    return Term(before["epoch"], before["leader"])


def check(conn: Connection, epoch: int) -> None:
    """Raise FencedOut unless `epoch` is still the recorded one.

    Takes a key-share lock on the epoch row, so a new leader's claim (FOR UPDATE) waits
    for this transaction to end: a dispatch either commits under the old epoch before the
    claim, or fails here after it. Key share is the lightest lock that conflicts with the
    claim's; the term's own transactions take it together without waiting for each other.
    """
    row = conn.execute("SELECT epoch, leader FROM cluster_epoch WHERE id = 1 FOR KEY SHARE"
                       ).fetchone()
    assert row is not None
    if row["epoch"] != epoch:
        raise FencedOut(f"deposed: epoch {epoch} was replaced by {row['epoch']} "
                        f"({row['leader']})")


def current(conn: Connection) -> Term:
    """The recorded term."""
    row = conn.execute("SELECT epoch, leader FROM cluster_epoch WHERE id = 1").fetchone()
    assert row is not None
    return Term(row["epoch"], row["leader"])
