"""Fencing reaches the workers: a run message older than the newest epoch a worker has seen
(from ZooKeeper or from another message) is dropped unstarted and reported, and the
schedulers publish a fresh copy that no worker drops again, so the run executes once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from common import broker as topo
from common.broker import Broker
from common.db import Database
from common.db import epoch as epochs
from common.devstack import Stack
from common.messages import encode
from common.zk import Coordinator
from tests.integration import support
from tests.integration.support import wait_for
from tests.integration.test_redelivery import POOL, connected, take

pytestmark = pytest.mark.timeout(180)


def test_a_run_message_of_an_older_epoch_is_dropped_reported_and_the_run_executes_once(
        stack: Stack, db: Database, tmp_path: Path) -> None:
    book, stale_book = tmp_path / "fresh", tmp_path / "stale"
    connected(stack).close()
    # A run queued in a pool nobody serves: its message is taken away, and the run moved to
    # the workers' pool, so that the only copy they get is the one the test sends.
    job = support.create(db, "stale-copy", command=support.ledger_command(book),
                         pool=POOL)
    sent = wait_for(lambda: [m for m in take(stack, 0.5) if m.job_id == job["id"]], 20,
                    "the run message")[0]
    with db.transaction() as conn:
        conn.execute("UPDATE runs SET pool = 'default' WHERE id = %s", (sent.run_id,))
    # As a deposed leader would send it late: an older epoch (its command tells it apart).
    stale = replace(sent, pool="default", epoch=sent.epoch - 1,
                    payload={"command": support.ledger_command(stale_book)})
    broker = Broker(stack.cluster.settings.amqp_urls, name="test-stale-epoch")
    broker.connect()
    try:
        broker.publish(topo.RUNS, topo.run_routing_key("default", stale.priority),
                       encode(stale), message_id=stale.attempt_id)
    finally:
        broker.close()
    wait_for(lambda: support.first_state(db, job["id"]) == "succeeded", 30, "the run to succeed")
    assert not stale_book.exists()
    assert support.executions(book) == {sent.run_id: 1}
    run = support.runs(db, job["id"])[0]
    assert (run["attempt"], run["dispatch"]) == (1, sent.dispatch + 1)  # one fresh copy
    assert run["epoch"] >= sent.epoch


def test_copies_dropped_while_zookeeper_is_ahead_of_the_database_are_not_dropped_again(
        stack: Stack, db: Database, tmp_path: Path) -> None:
    book = tmp_path / "ledger"
    # What a new leader does first (its epoch in ZooKeeper), without the rest: the workers
    # see an epoch the database does not have, and drop the current leader's messages.
    coord = Coordinator(stack.cluster.settings.zk_hosts, root="/zeitplan",
                        session_timeout=support.SESSION_TIMEOUT, name="test-new-leader")
    coord.start()
    try:
        ahead = coord.new_epoch()
    finally:
        coord.stop()
    try:
        with db.transaction() as conn:
            assert epochs.current(conn).epoch < ahead
        due = datetime.now(UTC) + timedelta(seconds=2)  # the workers' watches fire first
        job = support.create(db, "epoch-ahead", command=support.ledger_command(book),
                             kind="at", expr=due.isoformat())
        wait_for(lambda: support.first_state(db, job["id"]) == "succeeded", 30,
                 "the run to succeed")
        run = support.runs(db, job["id"])[0]
        assert support.executions(book) == {run["id"]: 1}
        # The leader's copy was dropped once; the fresh one carried the newer epoch.
        assert (run["dispatch"], run["epoch"]) == (2, ahead)
    finally:
        # A new term takes an epoch past `ahead`: the stack is as before for later tests.
        old = stack.wait_leader(10)
        old.proc.kill()
        stack.wait_leader(support.SESSION_TIMEOUT + 10, other_than=old)
        support.heal(stack)
