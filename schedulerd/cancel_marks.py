"""The leader's upkeep of the cancellation marks: every cancellation recorded in PostgreSQL
gets its ZooKeeper mark (workers read the marks; they hold no database credentials), and
marks and records older than the run retention go."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

import structlog

from common.cancels import mark
from common.db import Database, cancels
from common.db import epoch as epochs
from common.errors import ServiceError
from common.zk import Coordinator

log = structlog.get_logger()
SYNC_INTERVAL = 1.0  # seconds between passes: the bound on a mark's delay after a cancel
EXPIRED_BATCH = 1000  # expired cancellations dropped per pass


@dataclass(frozen=True)
class Synced:
    """What one pass changed."""

    added: int
    removed: int


def sync(db: Database, coord: Coordinator, epoch: int, keep: timedelta) -> Synced:
    """Write the mark of every cancellation made within `keep` that lacks one, then drop
    the marks, and after them the records, of older ones (the records fenced by `epoch`).
    A mark's record goes only once the mark is gone, so no mark outlives its record."""
    with db.transaction() as conn:
        wanted = {mark(kind, target) for kind, target in cancels.current(conn, keep)}
        old = cancels.expired(conn, keep, EXPIRED_BATCH)
    missing = sorted(wanted - coord.cancel_marks())
    coord.add_cancel_marks(missing)
    if old:
        coord.remove_cancel_marks(mark(kind, target) for kind, target in old)
        with db.transaction() as conn:
            epochs.check(conn, epoch)
            cancels.forget(conn, old)
    return Synced(len(missing), len(old))


class MarkKeeper:
    """Runs :func:`sync` every SYNC_INTERVAL from the leader's cycle; a pass that fails
    (a service unreachable) is logged and made again next time, never holding up
    dispatch for longer than one bounded request."""

    def __init__(self, db: Database, coord: Coordinator, keep: timedelta) -> None:
        self.db = db
        self.coord = coord
        self.keep = keep
        self.next_pass = 0.0

    def step(self, epoch: int) -> None:
        """One pass when due (FencedOut ends the term, as for every leader write)."""
        if time.monotonic() < self.next_pass:
            return
        self.next_pass = time.monotonic() + SYNC_INTERVAL
        try:
            done = sync(self.db, self.coord, epoch, self.keep)
        except ServiceError as exc:
            log.warning("cancel_marks_sync_failed", error=str(exc))
            return
        if done.added or done.removed:
            log.info("cancel_marks_synced", added=done.added, removed=done.removed)
