"""A worker drops a run message older than the newest epoch it has seen (a deposed leader
may have published it) and reports it; the schedulers decide whether a fresh copy goes."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from common.broker import Delivery
from common.messages import RedeliveredMessage, RunMessage, decode, encode
from common.zk import Coordinator
from schedulerd.status_consumer import settle_action
from workerd.attempt import AttemptRunner
from workerd.config import WorkerConfig
from workerd.epochs import Epochs
from workerd.executor import Executor
from workerd.jobtypes import JobContext, Outcome
from workerd.outbox import Action, Outbox, Publish, Report, Settle

T0 = datetime(2026, 12, 7, 22, 0, tzinfo=UTC)
RUN = RunMessage(run_id=3, job_id=4, scheduled_for=T0, attempt=1, max_attempts=2,
                 job_type="shell", payload={}, pool="default", priority=5, concurrency="allow",
                 timeout_s=None, backoff={"base": 2, "factor": 2, "cap": 60, "jitter": 0},
                 epoch=100, dispatch=7)


class Counted:
    """A job type that counts its executions and fails each."""

    def __init__(self) -> None:
        self.executed: list[int] = []

    def run(self, ctx: JobContext) -> Outcome:
        self.executed.append(ctx.key.run_id)
        return Outcome("failed", exit_code=1, error="failed")


def worker(epochs: Epochs) -> tuple[Executor, Outbox, Counted]:
    job, outbox = Counted(), Outbox()
    runner = AttemptRunner(WorkerConfig(), cast(Coordinator, None), outbox, {"shell": job},
                           threading.Event(), epochs=epochs)
    ex = Executor(runner, outbox, 1, epochs=epochs)
    ex.start()
    return ex, outbox, job


def deliver(ex: Executor, *messages: RunMessage, tag: int = 1) -> None:
    body = encode(messages[0]) if len(messages) == 1 else \
        b"[" + b",".join(encode(m) for m in messages) + b"]"
    ex.submit(Delivery(tag, body, "q", "default.normal", False, 0, {}, None), generation=1)


def actions(outbox: Outbox, count: int) -> list[Action]:
    """The first `count` actions queued (within 5 s), confirming `running` reports as the
    broker would."""
    taken: list[Action] = []
    deadline = time.monotonic() + 5
    while len(taken) < count and time.monotonic() < deadline:
        for action in outbox.take(count - len(taken)):
            if isinstance(action, Report) and action.confirm is not None:
                action.confirm.settle(True)
            taken.append(action)
        time.sleep(0.01)
    return taken


def test_a_run_message_older_than_the_zookeeper_epoch_is_dropped_and_reported() -> None:
    seen = Epochs()
    ex, outbox, job = worker(seen)
    seen.see(101)  # the ZooKeeper watch: a new leader took epoch 101
    deliver(ex, RUN)
    done = actions(outbox, 2)
    assert isinstance(done[0], Report) and isinstance(done[0].message, RedeliveredMessage)
    reported = done[0].message
    assert (reported.run_id, reported.attempt, reported.dispatch, reported.seen_epoch) == (
        3, 1, 7, 101)
    assert done[1] == Settle(1, 1)
    time.sleep(0.1)
    assert job.executed == []


def test_a_message_with_a_newer_epoch_makes_older_ones_stale_even_in_the_same_pack() -> None:
    ex, outbox, job = worker(Epochs())
    newer = replace(RUN, run_id=8, epoch=105)
    deliver(ex, newer, replace(RUN, run_id=9), tag=1)
    deliver(ex, replace(RUN, run_id=10, epoch=104), tag=2)
    done = actions(outbox, 7)  # 9 and 10 reported; run 8: running, failed, retry, 2 acks
    dropped = [a.message for a in done if isinstance(a, Report)
               and isinstance(a.message, RedeliveredMessage)]
    assert sorted((m.run_id, m.seen_epoch) for m in dropped) == [(9, 105), (10, 105)]
    assert job.executed == [8]
    assert Settle(2, 1) in done and Settle(1, 1) in done  # the pack once both are settled


def test_a_retry_carries_the_newest_epoch_its_worker_has_seen() -> None:
    seen = Epochs()
    ex, outbox, _ = worker(seen)
    deliver(ex, RUN)
    seen.see(120)  # a new term while the attempt runs, before it fails
    retries = [a for a in actions(outbox, 4) if isinstance(a, Publish)]
    retry = decode(retries[0].body)
    assert isinstance(retry, RunMessage) and (retry.attempt, retry.epoch) == (2, 120)


def test_the_newest_epoch_is_kept() -> None:
    seen = Epochs()
    assert not seen.stale(5)
    seen.see(3)
    assert seen.newest == 5 and seen.stale(4) and not seen.stale(5) and not seen.stale(6)
    assert seen.newest == 6


ROW = {"state": "queued", "attempt": 1, "max_attempts": 3, "dispatch": 7}


@pytest.mark.parametrize(("row", "report", "action"), [
    # A copy dropped for its epoch, the run still waiting for it: a fresh copy.
    ({}, {}, "republish"),
    # The copy was replaced since (the new leader published the run again): nothing.
    ({"dispatch": 8}, {}, "ignore"),
    # Another delivery of the same copy runs or ran the attempt: its worker goes on.
    ({"state": "running"}, {}, "ignore"),
    ({"state": "failed"}, {}, "ignore"),
    ({"state": "failed", "attempt": 3}, {"attempt": 3}, "ignore"),
    # A retry message dropped for its epoch: the next attempt goes again.
    ({"state": "retrying"}, {"attempt": 2}, "retry"),
    ({"state": "failed", "attempt": 3}, {"attempt": 4}, "bury"),
])
def test_what_a_dropped_copy_makes_the_schedulers_do(row: dict[str, Any],
                                                     report: dict[str, Any],
                                                     action: str) -> None:
    dropped = RedeliveredMessage(run_id=3, attempt=1, worker="w", at=T0, dispatch=7,
                                 seen_epoch=101)
    assert settle_action({**ROW, **row}, replace(dropped, **report)) == action


def test_a_redelivered_copy_of_a_failed_attempt_still_gets_its_next_attempt() -> None:
    back = RedeliveredMessage(run_id=3, attempt=1, worker="w", at=T0, dispatch=7)
    assert settle_action({**ROW, "state": "failed"}, back) == "retry"
