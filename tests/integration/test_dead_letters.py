"""Dead letters on the running stack: recorded in PostgreSQL, runs they leave queued ended
`dead`, the queue bounded, the queue of earlier versions drained and retired."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from common import broker as topo
from common.broker import Broker
from common.daemon import Lifecycle
from common.db import Database
from common.devstack import Stack
from common.errors import BrokerError
from common.sections import BrokerSection, NodeSection
from schedulerd.config import DatabaseSection, SchedulerConfig
from schedulerd.dead_letters import DeadLetterConsumer
from tests.integration.support import create, first_state, runs, wait_for

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def broker(stack: Stack) -> Iterator[Broker]:
    client = Broker(stack.cluster.settings.amqp_urls, name="test-dead-letters")
    client.connect()
    yield client
    client.close()


def _letters(db: Database, where: str, value: Any) -> list[dict[str, Any]]:
    with db.transaction() as conn:
        return conn.execute(f"SELECT * FROM dead_letters WHERE {where} ORDER BY id",  # noqa: S608
                            (value,)).fetchall()


def test_a_run_message_past_the_delivery_limit_ends_its_run_dead_and_is_recorded(
        stack: Stack, db: Database, broker: Broker) -> None:
    # A pool no worker serves: this test is the consumer that keeps giving the message back.
    broker.declare_topology(["dlq-limit"])  # its queue exists before the run is queued
    job = create(db, "past-the-delivery-limit", command="true", pool="dlq-limit")
    wait_for(lambda: first_state(db, job["id"]) == "queued", 30, "the run queued")
    run = runs(db, job["id"])[0]
    queue = topo.run_queue("dlq-limit", topo.level_of(job["priority"]))
    for _ in range(topo.DELIVERY_LIMIT + 1):
        delivery = wait_for(lambda: broker.get(queue), 10, "the run message in its queue")
        assert delivery is not None
        broker.reject(delivery.tag, requeue=True)
    wait_for(lambda: first_state(db, job["id"]) == "dead", 30, "the run ended dead")
    ended = runs(db, job["id"])[0]
    assert ended["attempt"] == 1
    assert ended["reason"] == f"dead-lettered by RabbitMQ from {queue}: delivery_limit"
    letter = wait_for(lambda: _letters(db, "run_id = %s", run["id"]), 10, "the letter")[0]
    assert (letter["kind"], letter["reason"], letter["job_id"], letter["attempt"]) == (
        "run", "delivery_limit", job["id"], 1)
    assert letter["headers"]["x-death"][0]["queue"] == queue


def test_a_worker_out_of_attempts_leaves_a_letter_with_its_reason_and_stderr_tail(
        stack: Stack, db: Database) -> None:
    job = create(db, "dies-with-a-message",
                 command="echo first line >&2; echo the cause of death >&2; exit 3")
    wait_for(lambda: first_state(db, job["id"]) == "dead", 30, "the run dead")
    run = runs(db, job["id"])[0]
    letter = wait_for(lambda: _letters(db, "run_id = %s", run["id"]), 20, "the letter")[0]
    assert (letter["kind"], letter["reason"], letter["attempt"]) == (
        "run", "failed 1 of 1 attempts", 1)
    assert letter["stderr_tail"] == "first line\nthe cause of death\n"


def test_another_components_unparsable_letter_is_recorded_byte_for_byte_once(
        stack: Stack, db: Database, broker: Broker) -> None:
    body = b"\xff\x00 not a status event \x00\xfe"
    headers = {"x-zeitplan-reason": "status event refused: not JSON",
               "x-zeitplan-kind": "status"}
    for _ in range(2):  # the same letter twice (a publish repeated after a lost confirm)
        broker.publish(topo.DEAD, "", body, message_id="bad-status-1", headers=headers)
    broker.publish(topo.DEAD, "", b"marker", headers={"x-zeitplan-reason": "after the bad one"})
    wait_for(lambda: _letters(db, "reason = %s", "after the bad one"), 20, "the marker")
    letter = _letters(db, "body = %s", body)
    assert len(letter) == 1
    assert (bytes(letter[0]["body"]), letter[0]["kind"], letter[0]["reason"],
            letter[0]["run_id"]) == (body, "status", "status event refused: not JSON", None)


def test_a_letter_the_database_refuses_is_recorded_bare_and_the_queue_goes_on(
        stack: Stack, db: Database, broker: Broker) -> None:
    too_big = 2 ** 70  # parses as a run, but no bigint column holds its ids
    body = (b'{"v": 1, "type": "run", "run_id": %d, "job_id": %d, "scheduled_for": '
            b'"2026-01-01T00:00:00+00:00", "attempt": 1, "max_attempts": 1, "job_type": '
            b'"shell", "payload": {}, "pool": "default", "priority": 5, "concurrency": '
            b'"allow", "timeout_s": null, "backoff": {"base": 1, "factor": 2, "cap": 60, '
            b'"jitter": 0}, "epoch": 1}' % (too_big, too_big))
    broker.publish(topo.DEAD, "", body, headers={"x-zeitplan-reason": "ids out of range"})
    broker.publish(topo.DEAD, "", b"after it", headers={"x-zeitplan-reason": "next one"})
    bare = wait_for(lambda: _letters(db, "reason = %s", "ids out of range"), 20, "bare")[0]
    assert (bytes(bare["body"]), bare["run_id"], bare["kind"]) == (body, None, "run")
    assert "x-zeitplan-unrecordable" in bare["headers"]
    wait_for(lambda: _letters(db, "reason = %s", "next one"), 20, "the next letter")


def test_the_dead_letter_queue_is_bounded_and_refuses_rather_than_drops_when_full(
        stack: Stack, broker: Broker) -> None:
    # Redeclared without its bound, the live queue is refused: it has one.
    with pytest.raises(BrokerError, match="x-max-length"):
        broker.declare_queue(topo.DEAD_LETTERS)
    broker.connect()
    # The same arguments with a bound of 3: letters past it are refused (their publisher
    # tries again later; a quorum queue applies its bound a little late), and every letter
    # it confirmed is kept (drop-head would have dropped the oldest).
    channel = broker._ch()  # noqa: SLF001 - a queue of the same arguments, small bound
    channel.queue_declare("test.bounded-dead-letters", durable=True,
                          arguments=topo.dead_letter_arguments(limit=3))
    try:
        confirmed: list[bytes] = []
        for n in range(10):
            with contextlib.suppress(BrokerError):
                broker.publish("", "test.bounded-dead-letters", b"letter %d" % n)
                confirmed.append(b"letter %d" % n)
        print(f"{len(confirmed)} of 10 letters taken by a queue bounded at 3")
        assert 3 <= len(confirmed) < 10
        assert broker.message_count("test.bounded-dead-letters") == len(confirmed)
    finally:
        broker._ch().queue_delete("test.bounded-dead-letters")  # noqa: SLF001


def test_the_queue_of_earlier_versions_is_unbound_and_drained_into_the_table(
        stack: Stack, db: Database, broker: Broker) -> None:
    # As an earlier version left it: unbounded, bound to the exchange, holding a letter.
    broker._ch().queue_declare(topo.LEGACY_DEAD_QUEUE, durable=True,  # noqa: SLF001
                               arguments={"x-queue-type": "quorum"})
    broker._ch().queue_bind(topo.LEGACY_DEAD_QUEUE, topo.DEAD)  # noqa: SLF001
    broker.publish("", topo.LEGACY_DEAD_QUEUE, b"left by an earlier version",
                   headers={"x-zeitplan-reason": "legacy letter"})
    # Published while both queues are bound: a copy in each, recorded once.
    broker.publish(topo.DEAD, "", b"in both queues", headers={"x-zeitplan-reason": "both"})
    settings = stack.cluster.settings
    config = SchedulerConfig(node=NodeSection(name="test-dead-letters"),
                             database=DatabaseSection(dsn=settings.pg_dsn),
                             broker=BrokerSection(urls=tuple(settings.amqp_urls)))
    life = Lifecycle("test")
    consumer = DeadLetterConsumer(config, db, life)
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    try:
        letter = wait_for(lambda: _letters(db, "reason = %s", "legacy letter"), 20, "it")[0]
        assert bytes(letter["body"]) == b"left by an earlier version"
        wait_for(lambda: _letters(db, "reason = %s", "both"), 20, "the letter in both")
        wait_for(lambda: broker.message_count(topo.LEGACY_DEAD_QUEUE) == 0, 20, "drained")
        assert len(_letters(db, "reason = %s", "both")) == 1
    finally:
        life.stopping.set()
        thread.join(10)
    try:
        # Unbound: a letter published now goes to the bounded queue only.
        broker.publish(topo.DEAD, "", b"after the upgrade", headers={"x-zeitplan-reason": "new"})
        wait_for(lambda: _letters(db, "reason = %s", "new"), 20, "a letter after it")
        assert broker.message_count(topo.LEGACY_DEAD_QUEUE) == 0
    finally:
        broker._ch().queue_delete(topo.LEGACY_DEAD_QUEUE)  # noqa: SLF001 - the operator's step
