"""The fencing token: leadership epochs recorded in PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from common.db import Connection
from common.errors import FencedOut


@dataclass(frozen=True)
class Term:
    """A leadership term as recorded in the database."""

    epoch: int
    leader: str
    last_dispatch_at: datetime | None


def claim(conn: Connection, epoch: int, leader: str) -> Term:
    """Record `epoch` as current if it is larger than the recorded one.

    Returns the term it replaced; raises FencedOut when a larger epoch is already recorded.
    """
    before = conn.execute("SELECT epoch, leader, last_dispatch_at FROM cluster_epoch "
                          "WHERE id = 1 FOR UPDATE").fetchone()
    assert before is not None
    if before["epoch"] >= epoch:
        raise FencedOut(f"epoch {epoch} is not newer than the recorded {before['epoch']} "
                        f"({before['leader']})")
    conn.execute("UPDATE cluster_epoch SET epoch = %s, leader = %s, since = now(), "
                 "last_dispatch_at = NULL WHERE id = 1", (epoch, leader))
    return Term(before["epoch"], before["leader"], before["last_dispatch_at"])


def check(conn: Connection, epoch: int) -> None:
    """Raise FencedOut unless `epoch` is still the recorded one.

    Takes a key-share lock on the epoch row, so a new leader's claim (FOR UPDATE) waits
    for this transaction to end: a dispatch either commits under the old epoch before the
    claim, or fails here after it. A key-share lock, not a share lock, so that the term's
    own transactions do not wait for each other: `note_dispatch`'s update of the row takes
    a no-key-update lock, which a share lock held by the recording thread's transaction
    would block until that batch commits (dispatch stalled up to 0.3 s that way).
    """
    row = conn.execute("SELECT epoch, leader FROM cluster_epoch WHERE id = 1 FOR KEY SHARE"
                       ).fetchone()
    assert row is not None
    if row["epoch"] != epoch:
        raise FencedOut(f"deposed: epoch {epoch} was replaced by {row['epoch']} "
                        f"({row['leader']})")


def note_dispatch(conn: Connection, epoch: int) -> datetime:
    """Fence, then record this transaction's time as the term's latest dispatch batch."""
    check(conn, epoch)
    row = conn.execute("UPDATE cluster_epoch SET last_dispatch_at = now() WHERE id = 1 "
                       "RETURNING last_dispatch_at").fetchone()
    assert row is not None
    result: datetime = row["last_dispatch_at"]
    return result


def current(conn: Connection) -> Term:
    """The recorded term."""
    row = conn.execute("SELECT epoch, leader, last_dispatch_at FROM cluster_epoch WHERE id = 1"
                       ).fetchone()
    assert row is not None
    return Term(row["epoch"], row["leader"], row["last_dispatch_at"])
