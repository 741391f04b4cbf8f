"""One status event PostgreSQL refuses does not hold up the status queue: the batch is
split, the good events are applied, the bad one goes to the dead letters with the reason;
and a copy the consumer decides to publish goes out only once its transaction commits."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from common import broker as topo
from common.broker import Broker
from common.db import Database
from common.devstack import Stack
from common.messages import (
    INT32,
    LogMessage,
    RedeliveredMessage,
    StatusMessage,
    encode,
)
from common.states import RunState
from tests.integration.support import create, logged, report, runs, wait_for
from tests.integration.test_redelivery import POOL, connected, take

pytestmark = pytest.mark.timeout(120)


def parked(db: Database, name: str) -> dict[str, Any]:
    """A queued run of a new job in a pool no worker serves."""
    job = create(db, name, command="true", pool=POOL)
    wait_for(lambda: (r := runs(db, job["id"])) and r[0]["state"] == "queued", 20,
             f"the run of {name} to be queued")
    return runs(db, job["id"])[0]


def raw_status(run_id: int, **fields: Any) -> bytes:
    """A status event as a careless worker might send it (not cleaned by `encode`)."""
    return json.dumps({"v": 1, "type": "status", "run_id": run_id, "attempt": 1,
                       "state": "cancelled", "at": datetime.now(UTC).isoformat(), **fields}
                      ).encode()


def publish_list(stack: Stack, *items: bytes) -> None:
    """Several events in one body, as a worker sends them."""
    broker = Broker(stack.cluster.settings.amqp_urls, name="test-intake")
    broker.connect()
    try:
        broker.publish(topo.STATUS, topo.STATUS, b"[" + b",".join(items) + b"]")
    finally:
        broker.close()


def status_letters(db: Database, run_ids: set[int]) -> list[tuple[dict[str, Any], str]]:
    """The status events about these runs that the schedulers recorded as dead letters:
    (the event as received, the reason)."""
    with db.transaction() as conn:
        rows = conn.execute("SELECT body, reason FROM dead_letters WHERE kind = 'status' "
                            "ORDER BY id").fetchall()
    letters: list[tuple[dict[str, Any], str]] = []
    for row in rows:  # other tests' status letters may be anything, even not JSON
        try:
            event = json.loads(bytes(row["body"]))
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("run_id") in run_ids:
            letters.append((event, row["reason"]))
    return letters


def test_an_event_postgresql_refuses_is_dead_lettered_and_the_rest_of_its_batch_applied(
        stack: Stack, db: Database) -> None:
    connected(stack).close()
    good, surrogate, huge = (parked(db, f"intake-{n}") for n in ("good", "surrogate", "huge"))
    publish_list(
        stack,
        encode(StatusMessage(good["id"], 1, RunState.CANCELLED, datetime.now(UTC),
                             reason="good event")),
        raw_status(surrogate["id"], error="bad byte \udcff"),
        raw_status(huge["id"], exit_code=2**40),
        encode(LogMessage(good["id"], 1, "stdout", 1, b"after the bad ones\n")))
    wait_for(lambda: logged(db, good["id"], 1), 20, "the event after the bad ones")
    assert runs(db, good["job_id"])[0]["state"] == "cancelled"
    assert runs(db, surrogate["job_id"])[0]["state"] == "queued"
    assert runs(db, huge["job_id"])[0]["state"] == "queued"
    bad = {surrogate["id"], huge["id"]}
    wait_for(lambda: len(status_letters(db, bad)) == 2, 20,
             "both bad events recorded as dead letters")
    dead = {event["run_id"]: (event, reason) for event, reason in status_letters(db, bad)}
    assert dead[surrogate["id"]][0]["error"] == "bad byte \udcff"  # as it was received
    assert dead[huge["id"]][0]["exit_code"] == 2**40
    assert all(reason.startswith("data refused: ") for _, reason in dead.values())
    # The same events as a worker sends them (cleaned, clamped) are stored: the queue flows.
    report(stack,
           StatusMessage(surrogate["id"], 1, RunState.CANCELLED, datetime.now(UTC),
                         error="bad byte \udcff"),
           StatusMessage(huge["id"], 1, RunState.CANCELLED, datetime.now(UTC), exit_code=2**40))
    wait_for(lambda: runs(db, huge["job_id"])[0]["state"] == "cancelled", 20,
             "the cleaned events applied")
    assert runs(db, surrogate["job_id"])[0]["error"] == "bad byte \ufffd"
    assert runs(db, huge["job_id"])[0]["exit_code"] == INT32[1]


def test_a_copy_goes_out_only_after_the_transaction_that_decided_it_commits(
        stack: Stack, db: Database) -> None:
    connected(stack).close()
    run, other = parked(db, "republished-once"), parked(db, "bad-report")
    wait_for(lambda: take(stack, 0.5) and not take(stack, 0.5), 20, "the run messages")
    # Two reports in one batch: the first decides a copy of its run, then the second makes
    # PostgreSQL refuse the transaction (an epoch past bigint); the first is applied again
    # in a transaction of its own, and must not have sent a copy the first time.
    publish_list(
        stack,
        encode(RedeliveredMessage(run["id"], 1, "worker-x", datetime.now(UTC),
                                  dispatch=run["dispatch"])),
        encode(RedeliveredMessage(other["id"], 1, "worker-y", datetime.now(UTC),
                                  dispatch=other["dispatch"], seen_epoch=2**70)),
        encode(LogMessage(run["id"], 1, "stdout", 1, b"marker\n")))
    wait_for(lambda: logged(db, run["id"], 1), 20, "the status consumer to reach the marker")
    copies = take(stack, 2.0)
    assert [(m.run_id, m.attempt, m.dispatch) for m in copies] == [
        (run["id"], 1, run["dispatch"] + 1)]
    assert runs(db, run["job_id"])[0]["dispatch"] == run["dispatch"] + 1
    assert runs(db, other["job_id"])[0]["dispatch"] == other["dispatch"]
    dead = wait_for(lambda: status_letters(db, {other["id"]}), 20,
                    "the bad report recorded as a dead letter")
    assert [(event["seen_epoch"], reason.split(":")[0]) for event, reason in dead] == [
        (2**70, "data refused")]
