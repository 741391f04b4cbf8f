"""The leader's recording thread: due jobs' fire times become runs in the database.

It runs beside the term's dispatch loop, so recording a mass fire or a busy second of cron
jobs (a batch of 500 jobs takes a loaded leader 0.2 s) never holds back the dispatch of
runs already due. Every batch is one transaction that checks the term's epoch (fencing);
the lease is checked before each, as before each publish.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from common.daemon import UNEXPECTED
from common.db import Database
from common.db import dispatch as q
from common.db import epoch as epochs
from common.errors import FencedOut, ServiceError
from schedulerd import metrics
from schedulerd.config import LeaderSection
from schedulerd.planner import materialise

log = structlog.get_logger()
RETRY_AFTER = 0.5  # seconds before recording again after a service error


class Recorder:
    """Records fire times up to `lookahead` ahead, a batch of jobs per transaction, on a
    thread of its own; `wake` is set whenever it recorded runs due within `poll_interval`
    (the dispatch loop then loads them at once)."""

    def __init__(self, cfg: LeaderSection, db: Database, epoch: int,
                 may_act: Callable[[], bool], wake: threading.Event) -> None:
        self.cfg, self.db, self.epoch = cfg, db, epoch
        self.may_act = may_act  # the term's lease check
        self.wake = wake
        self.fenced: FencedOut | None = None  # set when a newer term exists
        self._recorded = 0
        self._lock = threading.Lock()
        self._ending = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="recorder", daemon=True)

    def start(self) -> None:
        """Start recording."""
        self._thread.start()

    def end(self) -> None:
        """Stop after the current batch, without waiting for it (a SIGTERM hands over at
        once; a batch of an ended term that still commits is fenced by its epoch or, when
        its term was the latest, records runs the next term dispatches)."""
        self._ending.set()

    def take(self) -> int:
        """Runs recorded since the last call."""
        with self._lock:
            count, self._recorded = self._recorded, 0
        return count

    def _serve(self) -> None:
        while not self._ending.is_set():
            more = False
            try:
                more = self.may_act() and self.record_batch()
            except FencedOut as exc:
                self.fenced = exc
                self.wake.set()  # the dispatch loop ends the term
                return
            except ServiceError as exc:
                log.warning("leader_record_failed", error=str(exc))
                self._ending.wait(RETRY_AFTER)
                continue
            except Exception:  # noqa: BLE001 - the recorder must outlive a bug in one batch
                log.exception(UNEXPECTED)
                self._ending.wait(RETRY_AFTER)
                continue
            if not more:
                self._ending.wait(self.cfg.poll_interval)

    def record_batch(self) -> bool:
        """Record one batch of due jobs' fire times; True when more jobs are due."""
        now = datetime.now(UTC)
        horizon = now + timedelta(seconds=self.cfg.lookahead)
        with self.db.transaction() as conn:
            epochs.check(conn, self.epoch)
            jobs = q.due_jobs(conn, horizon, self.cfg.batch)
            plan = materialise(jobs, now=now, horizon=horizon)
            added = q.record_fires(conn, plan.runs, self.epoch)
            q.advance_jobs(conn, plan.cursors)
        skipped = sum(1 for r in plan.runs if r.state == "skipped")
        metrics.MATERIALISED.inc(len(plan.runs) - skipped)
        metrics.SKIPPED.inc(skipped + plan.unrecorded_skips)
        if plan.unrecorded_skips:
            log.warning("misfires_summarised", fires=plan.unrecorded_skips)
        with self._lock:
            self._recorded += added
        soon = now + timedelta(seconds=self.cfg.poll_interval)
        if added and any(r.state != "skipped" and r.due_at <= soon for r in plan.runs):
            self.wake.set()
        return len(jobs) == self.cfg.batch
