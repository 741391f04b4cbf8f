"""The worker acknowledges a run of consecutive settled deliveries with one cumulative ack."""

from __future__ import annotations

from workerd.sequencer import cumulative_ack


def test_every_unsettled_delivery_acked_becomes_one_cumulative_ack() -> None:
    assert cumulative_ack({3, 4, 5}, {3, 4, 5}) == (5, [])


def test_the_cumulative_ack_stops_below_the_first_delivery_still_running() -> None:
    # 6 is still executing: acking "up to 7" would settle it too.
    assert cumulative_ack({4, 5, 6, 7}, {4, 5, 7}) == (5, [7])


def test_nothing_cumulative_when_the_oldest_delivery_is_still_running() -> None:
    assert cumulative_ack({1, 2, 3}, {2, 3}) == (None, [2, 3])


def test_no_acks_means_no_ack() -> None:
    assert cumulative_ack({1, 2}, set()) == (None, [])
