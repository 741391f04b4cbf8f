"""workerd.latch.Latch: a one-shot signal between threads."""

from __future__ import annotations

import threading

from workerd.latch import Latch


def test_a_latch_times_out_closed_then_opens_for_every_waiter() -> None:
    latch = Latch()
    assert latch.wait(0.01) is False and not latch.is_set()
    threading.Timer(0.05, latch.set).start()
    assert latch.wait(5) is True
    latch.set()  # a second set changes nothing
    assert latch.is_set() and latch.wait(0) and latch.wait(0)


def test_threads_waiting_on_a_latch_all_wake() -> None:
    latch = Latch()
    woke: list[bool] = []
    waiters = [threading.Thread(target=lambda: woke.append(latch.wait(5))) for _ in range(4)]
    for thread in waiters:
        thread.start()
    latch.set()
    for thread in waiters:
        thread.join(5)
    assert woke == [True] * 4
