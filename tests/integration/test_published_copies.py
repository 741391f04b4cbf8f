"""The leader's recovery queries against PostgreSQL: which copies RabbitMQ confirmed, which
queued runs an older term left unconfirmed, and which failed runs never had their retry
sent (a scratch database: no scheduler acts on it)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from common.db import Database
from common.db import dispatch as q
from common.db import epoch as epochs
from common.devcluster import LocalCluster
from tests.integration.support import create, scratch_database

EPOCH = 7


@pytest.fixture
def scratch(cluster: LocalCluster) -> Iterator[Database]:
    """A pool on a scratch database whose recorded epoch is EPOCH."""
    for dsn in scratch_database(cluster):
        pool = Database(dsn, max_size=2, name="published-copies")
        with pool.transaction() as conn:
            epochs.claim(conn, EPOCH, "sched-test")
        yield pool
        pool.close()


def _runs(db: Database, count: int, **job: Any) -> list[int]:
    """`count` runs of a new job, recorded and claimed (queued, first copy) by EPOCH."""
    job_id = create(db, f"job-{datetime.now(UTC).timestamp()}", command="true", **job)["id"]
    first = datetime.now(UTC).replace(microsecond=0)
    fires = [first + timedelta(seconds=n) for n in range(count)]
    with db.transaction() as conn:
        q.record_fires(conn, [q.NewRun(job_id, at, at, 5, "default") for at in fires], EPOCH)
        ids = [r["id"] for r in conn.execute(
            "SELECT id FROM runs WHERE job_id = %s ORDER BY id", (job_id,)).fetchall()]
        q.claim(conn, ids, EPOCH)
    return ids


def _unconfirmed(db: Database, epoch: int, copied_before: datetime | None = None,
                 in_hand: tuple[int, ...] = ()) -> set[int]:
    """What term `epoch` sweeps (by default none of its own copies: all are too recent)."""
    cut = copied_before or datetime.now(UTC) - timedelta(hours=1)
    with db.transaction() as conn:
        return {r["run_id"] for r in q.unconfirmed(conn, epoch, cut, in_hand, 100)}


def _copies(db: Database, ids: list[int]) -> list[tuple[int, int]]:
    with db.transaction() as conn:
        return [(r["dispatch"], r["published_dispatch"]) for r in conn.execute(
            "SELECT dispatch, published_dispatch FROM runs WHERE id = ANY(%s) ORDER BY id",
            (ids,)).fetchall()]


def test_only_copies_never_confirmed_are_swept_and_only_by_a_later_term(
        scratch: Database) -> None:
    a, b, c, d = _runs(scratch, 4)
    with scratch.transaction() as conn:
        # c's record names a copy before its latest: it confirms nothing.
        q.record_published(conn, [(b, 1), (a, 1), (c, 0)])
    assert _unconfirmed(scratch, EPOCH) == set()  # the term's own: it still holds them
    assert _unconfirmed(scratch, EPOCH + 1) == {c, d}
    with scratch.transaction() as conn:
        fresh = q.redispatch(conn, [c, d], EPOCH + 1)
    assert {k: v["dispatch"] for k, v in fresh.items()} == {c: 2, d: 2}
    assert _unconfirmed(scratch, EPOCH + 1) == set()
    with scratch.transaction() as conn:
        q.record_published(conn, [(c, 2)])
        conn.execute("UPDATE runs SET state = 'running' WHERE id = %s", (a,))
    assert _unconfirmed(scratch, EPOCH + 2) == {d}
    with scratch.transaction() as conn:
        conn.execute("UPDATE runs SET state = 'running' WHERE id = %s", (d,))
        q.record_published(conn, [(d, 2)])  # no longer queued: nothing to record
    assert _unconfirmed(scratch, EPOCH + 2) == set()
    assert _copies(scratch, [a, b, c, d]) == [(1, 1), (1, 1), (2, 2), (2, 0)]


def test_the_terms_own_copies_are_swept_once_old_and_not_held_by_the_leader(
        scratch: Database) -> None:
    # A status consumer that died between its commit and its publish leaves a copy of the
    # current term that no leader holds: swept once older than the cut-off.
    held, lost, recent = _runs(scratch, 3)
    with scratch.transaction() as conn:
        conn.execute("UPDATE runs SET queued_at = now() - interval '1 minute' "
                     "WHERE id = ANY(%s)", ([held, lost],))
    cut = datetime.now(UTC) - timedelta(seconds=10)
    assert _unconfirmed(scratch, EPOCH, cut, in_hand=(held,)) == {lost}
    with scratch.transaction() as conn:
        q.record_published(conn, [(lost, 1)])
    assert _unconfirmed(scratch, EPOCH, cut) == {held}
    assert recent not in _unconfirmed(scratch, EPOCH, cut)
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert _unconfirmed(scratch, EPOCH, later, in_hand=(held,)) == {recent}


def test_a_next_attempt_is_a_new_copy_not_confirmed_until_recorded(scratch: Database) -> None:
    a, b = _runs(scratch, 2)
    with scratch.transaction() as conn:
        q.record_published(conn, [(a, 1), (b, 1)])
        q.requeue(conn, [a, b], EPOCH, "worker lost")
        q.record_published(conn, [(b, 2)])
    assert _copies(scratch, [a, b]) == [(2, 1), (2, 2)]
    assert _unconfirmed(scratch, EPOCH + 1) == {a}


def test_a_failed_run_is_retried_after_the_stale_window_and_its_next_backoff(
        scratch: Database) -> None:
    # Delay before attempt 3: 2 * 2 ** 1 = 4 s; the last attempt has no retry to wait for.
    late, recent, last, still_running = _runs(
        scratch, 4, max_attempts=3, backoff_base_s=2, backoff_factor=2, backoff_cap_s=100)
    # A factor so large that the delay must be capped without computing the power.
    huge, = _runs(scratch, 1, max_attempts=100, backoff_base_s=1, backoff_factor=1e6,
                  backoff_cap_s=50)
    now = datetime.now(UTC)
    ago = {late: (2, "failed", 65), recent: (2, "timed_out", 63), last: (3, "timed_out", 61),
           still_running: (2, "running", 90), huge: (80, "failed", 109)}
    with scratch.transaction() as conn:
        for run_id, (attempt, state, seconds) in ago.items():
            conn.execute("UPDATE runs SET attempt = %s, state = %s, updated_at = %s "
                         "WHERE id = %s", (attempt, state, now - timedelta(seconds=seconds),
                                           run_id))
    with scratch.transaction() as conn:
        found = q.unsent_retries(conn, now - timedelta(seconds=60), 100)
    assert sorted(r["run_id"] for r in found) == sorted([late, last])
    with scratch.transaction() as conn:
        found = q.unsent_retries(conn, now - timedelta(seconds=58), 100)
    assert sorted(r["run_id"] for r in found) == sorted([late, recent, last, huge])


def test_a_kept_copy_is_current_only_while_its_run_is_queued_at_that_copy(
        scratch: Database) -> None:
    # What a status consumer kept across a reconnection is published only if the run is
    # still queued at that copy: a sweep's newer copy, or a run that moved on, drops it.
    swept, started, kept = _runs(scratch, 3)
    with scratch.transaction() as conn:
        q.redispatch(conn, [swept], EPOCH)
        conn.execute("UPDATE runs SET state = 'running' WHERE id = %s", (started,))
    with scratch.transaction() as conn:
        assert q.queued_copies(conn, [kept, swept, started, kept]) == {kept: 1, swept: 2}
