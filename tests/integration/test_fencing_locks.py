"""The fencing row's locks: a term's own transactions do not wait for each other, while a
new term's claim still waits for every transaction of the old one (a database of its own,
so the shared stack's leader is not disturbed)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

from common.db import Connection
from common.db import epoch as epochs
from common.db.migrate import migrate
from common.devcluster import LocalCluster
from common.errors import FencedOut

EPOCH = 7


@pytest.fixture
def dsn(cluster: LocalCluster) -> Iterator[str]:
    """A migrated scratch database whose recorded epoch is EPOCH."""
    name = f"fencing_{uuid.uuid4().hex[:8]}"
    admin = cluster.settings.pg_dsn
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(admin)
    info["dbname"] = name
    scratch = psycopg.conninfo.make_conninfo(**info)
    migrate(scratch)
    with _connect(scratch) as conn, conn.transaction():
        epochs.claim(conn, EPOCH, "sched-test")
    yield scratch
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _connect(dsn: str) -> Connection:
    conn: Connection = psycopg.connect(dsn, row_factory=dict_row)
    conn.execute("SET lock_timeout = '1s'")
    conn.commit()
    return conn


def test_a_dispatch_does_not_wait_for_the_recording_batch_of_its_own_term(dsn: str) -> None:
    # The recorder's batch transaction: fenced, still open.
    with _connect(dsn) as recording, _connect(dsn) as dispatch:
        epochs.check(recording, EPOCH)
        # The dispatch loop's claim marks its batch on the same row meanwhile. With a share
        # lock in check() this waited for the recording batch (here: lock_timeout).
        at = epochs.note_dispatch(dispatch, EPOCH)
        dispatch.commit()
        # ...and a recording batch may start while a dispatch transaction is open.
        epochs.note_dispatch(dispatch, EPOCH)
        epochs.check(recording, EPOCH)
        recording.commit()
        dispatch.commit()
        assert epochs.current(recording).last_dispatch_at is not None
        assert epochs.current(recording).last_dispatch_at >= at


def test_a_new_term_waits_for_the_old_terms_open_transaction_then_fences_it(dsn: str) -> None:
    with _connect(dsn) as old, _connect(dsn) as new:
        epochs.check(old, EPOCH)
        with pytest.raises(psycopg.errors.LockNotAvailable):
            epochs.claim(new, EPOCH + 1, "sched-new")  # waits for `old`: lock_timeout
        new.rollback()
        old.commit()  # the old term's transaction ends (its writes commit under EPOCH)
        epochs.claim(new, EPOCH + 1, "sched-new")
        new.commit()
        with pytest.raises(FencedOut):
            epochs.check(old, EPOCH)
        old.rollback()
        with pytest.raises(FencedOut):
            epochs.note_dispatch(old, EPOCH)
