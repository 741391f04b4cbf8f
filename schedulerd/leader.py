"""One leadership term: claim the epoch, then dispatch and recover (a Recorder thread
materialises fire times meanwhile).

Each term starts with a new epoch from ZooKeeper recorded in PostgreSQL; every write of
the term checks it (fencing), and every publish first checks the ZooKeeper lease, so a
paused or partitioned leader neither writes nor publishes once deposed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, astuple
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import structlog

from common.broker import Broker
from common.broker_batch import BatchPublisher, PublishIncomplete
from common.daemon import UNEXPECTED
from common.db import Connection, Database, retention
from common.db import dispatch as q
from common.db import epoch as epochs
from common.errors import (
    BrokerError,
    CoordinationError,
    DatabaseError,
    FencedOut,
    ServiceError,
)
from common.messages import RunMessage
from common.zk import Coordinator
from schedulerd import metrics
from schedulerd.cancel_marks import MarkKeeper
from schedulerd.config import SchedulerConfig
from schedulerd.planner import TimerHeap, run_message
from schedulerd.publisher import RunPublisher
from schedulerd.recorder import Recorder

log = structlog.get_logger()
T = TypeVar("T")
PUBLISH_RETRY = 0.05  # seconds before publishing again what RabbitMQ refused or missed
REFUSALS_KEPT = 1.0  # seconds of refusals on one connection before it is replaced
STOP_CHECK = 0.05  # seconds between checks for a stop while the dispatch loop sleeps
RETRY_UNSENT = "the failed attempt's worker never sent its retry"
SWEEP_INTERVAL = 2.0  # seconds between sweeps for older terms' unconfirmed runs


class Refusals:
    """When the leader replaces its publishing connection after a failed window: at once
    when the connection failed or went quiet; when the broker refused messages (answered),
    only once refusals have lasted `patience` seconds without a window going through."""

    def __init__(self, patience: float) -> None:
        self.patience = patience
        self.since: float | None = None

    def replace(self, answered: bool, now: float) -> bool:
        """A window failed at `now`: True when the connection must be replaced."""
        self.since = now if self.since is None else self.since
        if not answered or now - self.since > self.patience:
            self.since = None
            return True
        return False

    def accepted(self) -> None:
        """A window went through: refusals so far are forgiven."""
        self.since = None


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


class StepTimer:
    """Wall-clock seconds spent in each step of a cycle."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def timed(self, name: str, step: Callable[..., T], *args: Any) -> T:
        """Run `step(*args)` and add its duration under `name`."""
        began = time.monotonic()
        try:
            return step(*args)
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.monotonic() - began

    @property
    def total(self) -> float:
        """Seconds over all steps."""
        return sum(self.seconds.values())

    def rounded(self) -> dict[str, float]:
        """Each step's seconds, to the millisecond."""
        return {name: round(value, 3) for name, value in self.seconds.items()}


class Term:
    """The leader's state for one term; `run()` returns when the term ends."""

    def __init__(self, config: SchedulerConfig, db: Database, coord: Coordinator,
                 stop: threading.Event, on_cycle: Callable[[str], None]) -> None:
        self.cfg = config.leader
        self.config = config
        self.db = db
        self.coord = coord
        self.stop = stop
        self.on_cycle = on_cycle
        self.heap = TimerHeap()
        self.unpublished: list[RunMessage] = []
        self.unrecorded: list[tuple[int, int]] = []  # (run, dispatch) confirmed, not recorded
        self.uncertain: list[int] = []  # runs of a claim whose commit went unanswered
        self.broker = Broker(config.broker.urls, heartbeat=config.broker.heartbeat,
                             name=f"schedulerd-leader-{config.node.name}")
        self.publisher = RunPublisher(
            self.broker, self.cfg.pools,
            BatchPublisher(config.broker.urls, heartbeat=config.broker.heartbeat,
                           name=f"schedulerd-dispatch-{config.node.name}"),
            runs_per_message=self.cfg.runs_per_message)
        self.epoch = 0
        self.losses = coord.losses
        self.next_stale_check = 0.0
        self.next_refresh = 0.0  # refill at most every poll_interval...
        self.backlog = False  # ...or at once when the heap is empty and this is True
        self.hurry = False  # the last cycle ended with an empty heap and a backlog
        self.wake = threading.Event()  # the recorder has runs due soon (or was fenced)
        self.recorder: Recorder | None = None
        self.next_prune = 0.0
        self.cancel_marks = MarkKeeper(db, coord, timedelta(days=config.retention.runs_days))
        self.next_sweep = 0.0  # set when the term starts: orphan_grace from then
        self.published = 0
        self.refusals = Refusals(REFUSALS_KEPT)
        self.acting = True  # False while the lease does not hold (see may_act)

    # -- the term ------------------------------------------------------------------------
    def run(self) -> None:
        """Lead until stopped, deposed or the ZooKeeper session is lost."""
        self.epoch = self.coord.new_epoch()
        while True:
            try:
                with self.db.transaction() as conn:
                    before = epochs.claim(conn, self.epoch, self.config.node.name)
                break
            except FencedOut as exc:
                log.warning("leader_claim_refused", error=str(exc))
                return
            except DatabaseError as exc:
                log.warning("leader_claim_waiting", error=str(exc))
                if self.stop.is_set() or not self.may_act():
                    return
                self.stop.wait(1.0)
        self.next_sweep = time.monotonic() + self.cfg.orphan_grace
        metrics.IS_LEADER.set(1)
        metrics.EPOCH.set(self.epoch)
        log.info("leader_elected", epoch=self.epoch, previous_epoch=before.epoch,
                 previous_leader=before.leader)
        self.recorder = Recorder(self.cfg, self.db, self.epoch, self.may_act, self.wake)
        self.recorder.start()
        try:
            while not self.stop.is_set() and self.coord.losses == self.losses:
                if self.recorder.fenced is not None:
                    raise self.recorder.fenced
                self.on_cycle(self._guarded_cycle())
                self._nap(self._sleep_for())
            if not self.stop.is_set():
                log.warning("leader_session_lost", epoch=self.epoch)
            else:
                self._flush_unpublished()
        except FencedOut as exc:
            log.warning("leader_fenced", epoch=self.epoch, error=str(exc))
        finally:
            self.recorder.end()
            metrics.IS_LEADER.set(0)
            metrics.TIMER_HEAP.set(0)
            self.publisher.close()
            log.info("leader_resigned", epoch=self.epoch, published=self.published)

    def _guarded_cycle(self) -> str:
        """A cycle whose service errors (and bugs) are logged; the term goes on."""
        try:
            return self.cycle()
        except FencedOut:
            raise
        except ServiceError as exc:
            log.warning("leader_cycle_failed", error=str(exc))
            if isinstance(exc, BrokerError):
                self.publisher.close()
            self.stop.wait(0.5)
            return f"leader: waiting for a service ({exc})"
        except Exception:  # noqa: BLE001 - the leader must outlive a bug in one cycle
            log.exception(UNEXPECTED)
            self.stop.wait(0.5)
            return "leader: cycle failed"

    def may_act(self) -> bool:
        """The term's ZooKeeper session is the one still connected, with a recent round trip
        (a process that was paused or cut off must not act on its old leadership)."""
        if self.coord.losses != self.losses:
            return False
        return (self.coord.lease_valid() or self.coord.touch()) and \
            self.coord.losses == self.losses

    def cycle(self) -> str:
        """One pass; returns the line that describes it."""
        self.hurry = False
        self.acting = self.may_act()
        if not self.acting:
            return "leader: ZooKeeper unreachable, holding dispatch"
        self.cancel_marks.step(self.epoch)  # needs no RabbitMQ: copies may still be delivered
        if not self._ensure_broker():
            return "leader: RabbitMQ unreachable, holding dispatch"
        if not self._flush_unpublished():
            return f"leader: {len(self.unpublished)} runs waiting for RabbitMQ"
        steps = StepTimer()
        steps.timed("settle", self._settle_uncertain)
        recorded = self.recorder.take() if self.recorder else 0
        refill_now = self.backlog and not self.heap  # drained with more waiting: go on
        if self.wake.is_set():  # recorded runs due soon
            self.wake.clear()
            refill_now = True
        if time.monotonic() >= self.next_refresh or refill_now:
            self.next_refresh = time.monotonic() + self.cfg.poll_interval
            steps.timed("refill", self._refill)
        published = steps.timed("dispatch", self._dispatch_due)
        recovered = steps.timed("recover", self._recover)
        steps.timed("prune", self._prune)
        if steps.total > self.cfg.dispatch_ahead:
            log.warning("leader_cycle_slow", seconds=round(steps.total, 3), **steps.rounded())
        metrics.TIMER_HEAP.set(len(self.heap))
        self.hurry = self.backlog and not self.heap  # the next cycle should start at once
        nxt = self.heap.next_due()
        wake = f"{max(0.0, (nxt - utcnow()).total_seconds()):.2f} s" if nxt else "idle"
        return (f"leader: epoch {self.epoch}, recorded {recorded}, published {published}, "
                f"recovered {recovered}, holding {len(self.heap)}, next due in {wake}")

    def _sleep_for(self) -> float:
        if self.unpublished:  # refused or not sent: retry soon, not in a tight loop
            return PUBLISH_RETRY
        nxt = self.heap.next_due()
        if nxt is None:
            return 0.0 if self.hurry else self.cfg.poll_interval
        until = (nxt - utcnow()).total_seconds() - self.cfg.dispatch_ahead
        return max(0.0, min(self.cfg.poll_interval, until))

    # -- steps ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _queuing(self, ids: list[int]) -> Iterator[Connection]:
        """A transaction that queues runs `ids` (filled in by the caller) under this term,
        to be published after the commit. When the commit goes unanswered (the primary died
        during it, say) it may still have taken effect: `_settle_uncertain` finds out."""
        try:
            with self.db.transaction() as conn:
                yield conn
        except DatabaseError:
            self.uncertain.extend(ids)
            raise

    def _settle_uncertain(self) -> None:
        """Publish the runs of a claim whose commit went unanswered (the primary died during
        it, say) but took effect: queued by this term, never published. Runs it did not
        claim are still scheduled and come back with the next refill, which (like every
        dispatch) waits until this has succeeded, so none is published twice."""
        if not self.uncertain:
            return
        with self.db.transaction() as conn:
            epochs.check(conn, self.epoch)
            rows = [r for r in q.claimed_runs(conn, self.uncertain)
                    if r["state"] == "queued" and r["epoch"] == self.epoch]
        self.uncertain = []
        if rows:
            log.warning("uncertain_claim_published", count=len(rows))
        self.unpublished.extend(run_message(r) for r in rows)

    def _nap(self, seconds: float) -> None:
        """Sleep up to `seconds`: less when stopped (a SIGTERM hands over at once) or when
        the recorder has runs due soon."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self.wake.wait(min(left, STOP_CHECK)):
                return

    def _refill(self) -> None:
        limit = self.cfg.batch * 10
        horizon = utcnow() + timedelta(seconds=self.cfg.refill_reach)
        with self.db.transaction() as conn:
            rows = q.pending(conn, horizon, limit)
        self.backlog = len(rows) == limit
        for row in rows:
            self.heap.add(row["id"], row["due_at"], row["priority"])

    def _dispatch_due(self) -> int:
        published = 0
        # What is due by now (and `dispatch_ahead`), not what falls due meanwhile: a cycle
        # that kept dispatching would leave materialisation and refill behind.
        until = utcnow() + timedelta(seconds=self.cfg.dispatch_ahead)
        while self.may_act():
            ids = self.heap.pop_due(until, self.cfg.batch)
            if not ids:
                break
            with self._queuing(ids) as conn:
                epochs.check(conn, self.epoch)
                skipped, rows = q.claim(conn, ids, self.epoch)
            metrics.SKIPPED.inc(len(skipped))
            order = {run_id: n for n, run_id in enumerate(ids)}
            rows.sort(key=lambda r: order[r["run_id"]])
            self.unpublished.extend(run_message(row) for row in rows)
            published += len(rows)
            if not self._flush_unpublished():
                break
        return published

    def _flush_unpublished(self) -> bool:
        """Publish what this term claimed, a window at a time, checking the lease before
        each window, and record each window's confirmed copies; False if something is left
        (broker or lease)."""
        self._record_published()  # what an earlier failure of the database left
        while self.unpublished:
            if not self.may_act():
                return False
            window = self.unpublished[:self.config.broker.confirm_window]
            answered = False
            try:
                self.publisher.runs(window)
                sent = frozenset(range(len(window)))
            except BrokerError as exc:
                sent = exc.confirmed if isinstance(exc, PublishIncomplete) else frozenset()
                answered = isinstance(exc, PublishIncomplete) and exc.answered
                log.warning("publish_failed", unconfirmed=len(window) - len(sent),
                            error=str(exc))
            self.published += len(sent)
            self.unrecorded.extend((window[n].run_id, window[n].dispatch) for n in sent)
            self._record_published()
            self.unpublished[:len(window)] = [m for n, m in enumerate(window) if n not in sent]
            if len(sent) < len(window):
                # A refusal (a queue between leaders, say) leaves the connection sound: the
                # next cycle sends the rest on it (closing it cost 5 s after a node loss),
                # unless refusals last: a channel seen refusing for minutes after a node
                # loss accepted the same messages once replaced.
                if self.refusals.replace(answered, time.monotonic()):
                    self.publisher.close()
                return False
            self.refusals.accepted()
        return True

    def _record_published(self) -> None:
        """Record the copies RabbitMQ confirmed (one statement), so that no later term sends
        them again; kept for the next try when the database fails."""
        if not self.unrecorded:
            return
        try:
            with self.db.transaction() as conn:
                q.record_published(conn, self.unrecorded)
        except DatabaseError as exc:
            log.warning("publish_record_failed", runs=len(self.unrecorded), error=str(exc))
            return
        self.unrecorded = []

    def _recover(self) -> int:
        """Re-dispatch attempts whose worker died, and unconfirmed copies nobody holds."""
        count = 0
        if time.monotonic() >= self.next_stale_check:
            self.next_stale_check = time.monotonic() + min(2.0, self.cfg.lost_after / 4)
            count += self._requeue_lost()
            count += self._retry_unsent()
        if time.monotonic() >= self.next_sweep:
            swept = self._republish_unconfirmed()
            # Set only now, so that a failed sweep is tried again; a full one goes on at once.
            self.next_sweep = time.monotonic() + (0 if swept == self.cfg.batch
                                                  else SWEEP_INTERVAL)
            count += swept
        return count

    def _republish_unconfirmed(self) -> int:
        """Publish again, as new copies of this term, the queued runs whose publish RabbitMQ
        never confirmed: older terms' (only from `orphan_grace` after the term began: a
        deposed leader may still be waiting for a window's confirms until then), and copies
        of any term older than `orphan_grace` that this leader does not hold (a status
        consumer that died between its commit and its publish)."""
        in_hand = {m.run_id for m in self.unpublished} | {run for run, _ in self.unrecorded}
        in_hand.update(self.uncertain)
        taken: list[int] = []
        with self._queuing(taken) as conn:
            epochs.check(conn, self.epoch)
            rows = q.unconfirmed(conn, self.epoch,
                                 utcnow() - timedelta(seconds=self.cfg.orphan_grace),
                                 sorted(in_hand), self.cfg.batch)
            taken.extend(r["run_id"] for r in rows)
            fresh = q.redispatch(conn, taken, self.epoch)
        if not rows:
            return 0
        log.warning("unconfirmed_runs_republished", count=len(rows),
                    old_epochs=sorted({r["epoch"] for r in rows}))
        for row in rows:
            row.update(fresh[row["run_id"]])
        self.unpublished.extend(run_message(r) for r in rows)
        metrics.REDISPATCHED.labels("leader_lost").inc(len(rows))
        self._flush_unpublished()
        return len(rows)

    def _prune(self) -> None:
        keep = self.config.retention
        if time.monotonic() < self.next_prune:
            return
        self.next_prune = time.monotonic() + keep.interval
        with self.db.transaction() as conn:
            epochs.check(conn, self.epoch)
            pruned = retention.prune(conn, runs_age=timedelta(days=keep.runs_days),
                                     logs_age=timedelta(days=keep.logs_days))
        if any(astuple(pruned)):
            log.info("retention_pruned", **asdict(pruned))
            if pruned.full(5000):
                self.next_prune = 0.0  # more to do: next cycle

    def _requeue_lost(self) -> int:
        """Give the next attempt to attempts whose worker is lost, or bury their runs."""
        now = utcnow()
        try:
            live: list[str] | None = self.coord.member_names("workers")
        except CoordinationError:
            live = None  # membership unknown: only missing heartbeats count
        return self._next_attempts(lambda conn: q.lost_attempts(
            conn, stale_before=now - timedelta(seconds=self.cfg.stale_after),
            quiet_before=now - timedelta(seconds=self.cfg.lost_after),
            live_workers=live, limit=self.cfg.batch), "worker lost", "worker_lost")

    def _retry_unsent(self) -> int:
        """Give the next attempt to runs left failed or timed out because their worker never
        got its retry message confirmed (it lost its connection or died), or bury them when
        no attempt is left."""
        stale_before = utcnow() - timedelta(seconds=self.cfg.stale_after)
        return self._next_attempts(
            lambda conn: q.unsent_retries(conn, stale_before, self.cfg.batch),
            RETRY_UNSENT, "retry_unsent")

    def _next_attempts(self, find: Callable[[Connection], list[dict[str, Any]]],
                       reason: str, event: str) -> int:
        """Requeue the runs `find` returns as their next attempt, or bury those with no
        attempt left, in one fenced transaction; `event` names the log line and metric."""
        requeued: list[int] = []
        with self._queuing(requeued) as conn:
            epochs.check(conn, self.epoch)
            rows = find(conn)
            retry = [r for r in rows if r["attempt"] < r["max_attempts"]]
            dead = [r for r in rows if r["attempt"] >= r["max_attempts"]]
            requeued.extend(r["run_id"] for r in retry)
            fresh = q.requeue(conn, requeued, self.epoch, reason)
            q.bury(conn, [r["run_id"] for r in dead], f"{reason}; no attempts left")
        for row in retry:
            row.update(fresh[row["run_id"]])
            log.warning(event, run_id=row["run_id"], state=row.get("state"),
                        worker=row["worker"], next_attempt=row["attempt"])
        self.unpublished.extend(run_message(r) for r in retry)
        for row in dead:
            self._bury(row, f"{reason}; no attempts left")
        metrics.REDISPATCHED.labels(event).inc(len(retry))
        return len(rows)

    def _bury(self, row: dict[str, Any], reason: str) -> None:
        try:
            self.publisher.dead(run_message({**row, "epoch": self.epoch}), reason)
        except BrokerError as exc:
            log.warning("dead_letter_publish_failed", run_id=row["run_id"], error=str(exc))

    def _ensure_broker(self) -> bool:
        if self.publisher.connected:
            return True
        try:
            self.publisher.connect()
            return True
        except BrokerError as exc:
            log.warning("broker_unavailable", error=str(exc))
            return False
