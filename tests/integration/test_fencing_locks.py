"""The fencing row's locks: a new term's claim waits for every transaction of the old one
(a database of its own, so the shared stack's leader is not disturbed)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

from common.db import Connection
from common.db import epoch as epochs
from common.devcluster import LocalCluster
from common.errors import FencedOut
from tests.integration.support import scratch_database

EPOCH = 7


@pytest.fixture
def dsn(cluster: LocalCluster) -> Iterator[str]:
    """A scratch database whose recorded epoch is EPOCH."""
    for scratch in scratch_database(cluster):
        with _connect(scratch) as conn, conn.transaction():
            epochs.claim(conn, EPOCH, "sched-test")
        yield scratch


def _connect(dsn: str) -> Connection:
    conn: Connection = psycopg.connect(dsn, row_factory=dict_row)
    conn.execute("SET lock_timeout = '1s'")
    conn.commit()
    return conn


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
