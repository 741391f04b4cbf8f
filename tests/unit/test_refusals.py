"""The leader keeps a connection that refuses a publish, unless the refusals last."""

from __future__ import annotations

from schedulerd.leader import Refusals


def test_a_failed_or_silent_connection_is_replaced_at_once() -> None:
    assert Refusals(2.0).replace(answered=False, now=10.0)


def test_refusals_keep_the_connection_until_they_outlast_the_patience() -> None:
    refusals = Refusals(2.0)
    assert not refusals.replace(answered=True, now=10.0)
    assert not refusals.replace(answered=True, now=11.9)
    assert refusals.replace(answered=True, now=12.1)
    assert not refusals.replace(answered=True, now=12.2)  # a new connection, a new count


def test_a_window_that_goes_through_forgives_earlier_refusals() -> None:
    refusals = Refusals(2.0)
    assert not refusals.replace(answered=True, now=10.0)
    refusals.accepted()
    assert not refusals.replace(answered=True, now=12.5)
