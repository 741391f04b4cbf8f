"""The durable cancellation list in PostgreSQL and its marks in ZooKeeper (written and
pruned by the leader's sync, read by workers through a watch), and the leader's claim of a
jittered run against its start deadline; on a scratch database, so the shared stack's
leader neither claims these runs nor syncs these cancellations."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from common import jobops
from common.db import Connection, Database
from common.db import dispatch as q
from common.devcluster import LocalCluster
from common.errors import FencedOut
from common.messages import CancelMessage
from common.zk import Coordinator
from schedctl.services import Broadcast
from schedulerd.cancel_marks import Synced, sync
from tests.integration.support import SESSION_TIMEOUT, wait_for
from tests.integration.test_fencing_locks import EPOCH, dsn  # noqa: F401 - the fixture

KEEP = timedelta(days=90)


@pytest.fixture
def coord(cluster: LocalCluster) -> Iterator[Coordinator]:
    """A ZooKeeper session under a root of its own."""
    session = Coordinator(cluster.settings.zk_hosts, root=f"/cancel-{uuid.uuid4().hex[:8]}",
                          session_timeout=SESSION_TIMEOUT, name="test-leader")
    session.start()
    yield session
    session.stop()


def _job(conn: Connection, **columns: object) -> int:
    names = ", ".join(columns)
    row = conn.execute(
        "INSERT INTO jobs (name, job_type, payload, schedule_kind, schedule_expr"
        f"{', ' if columns else ''}{names}) VALUES ('cancel-marks', 'shell', "
        "'{\"command\": \"true\"}', 'now', 'now'"
        f"{''.join(', %s' for _ in columns)}) RETURNING id", tuple(columns.values())
    ).fetchone()
    assert row is not None
    return int(row["id"])


def _run(conn: Connection, job_id: int, fired_ago: float, jitter: float,
         state: str = "scheduled") -> int:
    row = conn.execute(
        "INSERT INTO runs (job_id, scheduled_for, due_at, priority, pool, epoch, state) "
        "VALUES (%s, now() - make_interval(secs => %s), "
        "now() - make_interval(secs => %s), 5, 'default', %s, %s) RETURNING id",
        (job_id, fired_ago, fired_ago - jitter, EPOCH, state)).fetchone()
    assert row is not None
    return int(row["id"])


def test_the_leaders_claim_counts_the_start_deadline_from_the_jittered_due_time(
        dsn: str) -> None:  # noqa: F811 - the fixture
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        job = _job(conn, start_deadline_s=60.0, jitter_s=120.0)
        # Fired 100 s ago, due 40 s ago (60 s of jitter): within its 60 s deadline, which
        # counted from the fire time would have passed 40 s ago.
        within = _run(conn, job, fired_ago=100, jitter=60)
        # Fired 200 s ago, due 150 s ago: past the deadline however it is counted.
        missed = _run(conn, job, fired_ago=200, jitter=50)
        skipped, claimed = q.claim(conn, [within, missed], EPOCH)
    assert [r["run_id"] for r in claimed] == [within]
    assert claimed[0]["attempt"] == 1
    assert [s["id"] for s in skipped] == [missed]
    assert "start deadline missed" in skipped[0]["reason"]


def _state(db: Database, sql: str, *args: object) -> list[dict[str, object]]:
    with db.transaction() as conn:
        return conn.execute(sql, args).fetchall()


def test_cancellations_become_marks_that_a_watch_sees_and_expire_with_retention(
        dsn: str, coord: Coordinator) -> None:  # noqa: F811 - the fixture
    db = Database(dsn, max_size=2, name="test")
    try:
        with db.transaction() as conn:
            job = _job(conn)
            other = _job(conn)
            queued = _run(conn, job, 5, 0, state="queued")
            pending = _run(conn, job, 4, 0)
        seen: list[set[str]] = []
        changed = threading.Event()

        def watched(names: list[str]) -> None:
            seen.append(set(names))
            changed.set()
        coord.watch_cancel_marks(watched)  # a worker's view
        assert seen == [set()]
        # schedctl has no ZooKeeper: it records the cancellations in PostgreSQL only.
        jobops.cancel_run(db, queued, actor="test", notify=lambda _m: None)
        jobops.cancel_run(db, pending, actor="test", notify=lambda _m: None)  # never sent
        jobops.cancel_job(db, str(other), actor="test", notify=lambda _m: None)
        assert coord.cancel_marks() == set()
        done = sync(db, coord, EPOCH, KEEP)
        assert (done.added, done.removed) == (2, 0)
        assert coord.cancel_marks() == {f"run-{queued}", f"job-{other}"}
        wait_for(lambda: seen[-1] == {f"run-{queued}", f"job-{other}"}, 10, "the watch")
        assert sync(db, coord, EPOCH, KEEP) == Synced(0, 0)  # nothing left to do

        # A mark deleted by hand (or never written) is written again from PostgreSQL.
        coord.remove_cancel_marks([f"job-{other}"])
        assert sync(db, coord, EPOCH, KEEP).added == 1

        # Older than the retention: the mark goes, then the record (fenced).
        with db.transaction() as conn:
            conn.execute("UPDATE cancellations SET cancelled_at = now() - interval '91 days' "
                         "WHERE kind = 'job'")
            conn.execute("UPDATE cluster_epoch SET epoch = epoch + 1")
        with pytest.raises(FencedOut):
            sync(db, coord, EPOCH, KEEP)  # a deposed leader removes no record
        assert _state(db, "SELECT kind FROM cancellations ORDER BY kind") == [
            {"kind": "job"}, {"kind": "run"}]
        assert sync(db, coord, EPOCH + 1, KEEP).removed == 1
        assert coord.cancel_marks() == {f"run-{queued}"}
        assert _state(db, "SELECT kind, target_id FROM cancellations") == [
            {"kind": "run", "target_id": queued}]
        wait_for(lambda: seen[-1] == {f"run-{queued}"}, 10, "the watch to drop the mark")
    finally:
        db.close()


def test_schedctl_with_zookeeper_hosts_marks_a_cancellation_before_it_returns(
        cluster: LocalCluster, coord: Coordinator) -> None:
    notify = Broadcast([], cluster.settings.zk_hosts, zk_root=coord.root)
    notify(CancelMessage(run_id=12, job_id=None))
    notify(CancelMessage(run_id=None, job_id=3))
    notify(CancelMessage(run_id=12, job_id=None))  # again: the mark is there already
    assert coord.cancel_marks() == {"run-12", "job-3"}
    warning = notify.warning()  # no AMQP URLs: running attempts stop through the mark
    assert warning is not None and "mark" in warning
