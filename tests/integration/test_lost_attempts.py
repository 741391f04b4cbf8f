"""Which running attempts the leader takes for lost: ZooKeeper membership decides first; the
missing-heartbeat rule applies only when membership is unknown. Each case is built in one
transaction on the real database and rolled back, so no daemon sees its rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from common.db import Connection, Database
from common.db import dispatch as q
from common.db.migrate import migrate
from common.devcluster import LocalCluster

pytestmark = pytest.mark.timeout(120)
STALE_AFTER = timedelta(seconds=60)
LOST_AFTER = timedelta(seconds=10)


class Rollback(Exception):
    """Ends a test's transaction without committing it."""


@pytest.fixture
def conn(cluster: LocalCluster) -> Iterator[Connection]:
    migrate(cluster.settings.pg_dsn)
    database = Database(cluster.settings.pg_dsn, max_size=1, name="tests-lost")
    try:
        with database.transaction() as connection:
            yield connection
            raise Rollback
    except Rollback:
        pass
    finally:
        database.close()


def running(conn: Connection, worker: str, quiet_for: timedelta) -> int:
    """A run whose attempt 1 runs on `worker`, last heard of `quiet_for` ago."""
    job = conn.execute(
        "INSERT INTO jobs (name, job_type, payload, schedule_kind, schedule_expr) "
        "VALUES ('lost-test', 'shell', '{\"command\": \"true\"}', 'now', 'now') RETURNING id"
    ).fetchone()
    assert job is not None
    beat = datetime.now(UTC) - quiet_for
    run = conn.execute(
        "INSERT INTO runs (job_id, scheduled_for, due_at, attempt, state, priority, pool, "
        "worker, started_at, heartbeat_at, epoch) VALUES (%s, %s, %s, 1, 'running', 5, "
        "'default', %s, %s, %s, 0) RETURNING id",
        (job["id"], beat, beat, worker, beat, beat)).fetchone()
    assert run is not None
    return int(run["id"])


def lost(conn: Connection, live: list[str] | None) -> set[int]:
    now = datetime.now(UTC)
    rows = q.lost_attempts(conn, stale_before=now - STALE_AFTER, quiet_before=now - LOST_AFTER,
                           live_workers=live, limit=1000)
    return {row["run_id"] for row in rows}


def test_an_attempt_of_a_live_member_is_not_lost_however_long_its_heartbeats_are_late(
        conn: Connection) -> None:
    late = running(conn, "w-live", timedelta(seconds=90))
    assert late not in lost(conn, ["w-live"])


def test_an_attempt_of_a_worker_that_left_zookeeper_is_lost_after_the_quiet_window(
        conn: Connection) -> None:
    quiet = running(conn, "w-gone", LOST_AFTER + timedelta(seconds=2))
    recent = running(conn, "w-gone", timedelta(seconds=1))
    found = lost(conn, ["w-other"])
    assert quiet in found and recent not in found
    assert quiet in lost(conn, [])  # no worker is a member at all


def test_without_membership_only_the_missing_heartbeat_rule_applies(conn: Connection) -> None:
    stale = running(conn, "w-any", STALE_AFTER + timedelta(seconds=2))
    quiet = running(conn, "w-any", LOST_AFTER + timedelta(seconds=2))
    found = lost(conn, None)
    assert stale in found and quiet not in found
