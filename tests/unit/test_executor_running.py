"""The executor's list of what runs (the heartbeat's content) keeps an attempt while it
executes, whatever other copies of its run come and go on the same worker."""

from __future__ import annotations

import threading
import time
from typing import cast

import pytest

from common.broker import Delivery
from common.messages import RunMessage
from tests.unit.test_executor_hold import delivery
from workerd.attempt import AttemptRunner, Slot
from workerd.executor import Executor
from workerd.outbox import Outbox
from workerd.receipt import Receipt


class FirstBlocks:
    """Stands in for AttemptRunner: the first delivery executes until released, every
    later one ends at once (as a duplicate or overlap-skipped copy does)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.release = threading.Event()
        self.first_started = threading.Event()
        self.later_done = threading.Semaphore(0)
        self._seen = 0
        self._lock = threading.Lock()

    def starts_plainly(self, delivery: Delivery, message: RunMessage, cancelled: bool) -> bool:
        return False  # every attempt goes through handle()

    def handle(self, delivery: Delivery, receipt: Receipt, slot: Slot, cancelled: bool) -> None:
        with self._lock:
            self._seen += 1
            first = self._seen == 1
        if first:
            self.first_started.set()
            self.release.wait(10)
        else:
            self.later_done.release()


@pytest.mark.parametrize("second_attempt", [1, 2], ids=["re-sent copy", "next attempt"])
def test_an_attempt_stays_listed_while_another_copy_of_its_run_comes_and_goes(
        second_attempt: int) -> None:
    runner = FirstBlocks()
    ex = Executor(cast(AttemptRunner, runner), Outbox(), 2)
    ex.start()
    ex.submit(delivery(9, not_before=None, attempt=1), generation=1)
    assert runner.first_started.wait(5)
    ex.submit(delivery(9, not_before=None, attempt=second_attempt), generation=1)
    assert runner.later_done.acquire(timeout=5)
    try:
        deadline = time.monotonic() + 5  # the later copy's slot is let go just after
        while ex.running() != [(9, 1)] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ex.running() == [(9, 1)]
    finally:
        runner.release.set()
