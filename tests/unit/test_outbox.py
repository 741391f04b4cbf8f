"""The worker's outbox: FIFO order and one wake per batch of work."""

from __future__ import annotations

from workerd.outbox import Outbox, Settle


def test_actions_come_out_in_order_up_to_the_limit() -> None:
    outbox = Outbox()
    outbox.put(Settle(1, 1), Settle(2, 1))
    outbox.put(Settle(3, 1))
    assert [a.tag for a in outbox.take(2)] == [1, 2]  # type: ignore[union-attr]
    assert [a.tag for a in outbox.take(10)] == [3]  # type: ignore[union-attr]
    assert outbox.empty()


def test_the_consumer_is_woken_once_until_it_takes() -> None:
    outbox = Outbox()
    wakes: list[int] = []
    outbox.set_waker(lambda: wakes.append(1))
    outbox.put(Settle(1, 1))
    outbox.put(Settle(2, 1))
    assert len(wakes) == 1  # the second put finds a wake already on its way
    outbox.take(10)
    outbox.put(Settle(3, 1))
    assert len(wakes) == 2  # after a take, new work wakes the consumer again


def test_work_put_after_a_take_that_found_nothing_still_wakes() -> None:
    outbox = Outbox()
    wakes: list[int] = []
    outbox.set_waker(lambda: wakes.append(1))
    assert outbox.take(10) == []
    outbox.put(Settle(1, 1))
    assert wakes == [1]
