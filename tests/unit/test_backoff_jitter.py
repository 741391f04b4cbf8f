from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import ScheduleError
from common.schedule import Backoff, jitter

FIRE = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


@pytest.mark.parametrize(
    ("backoff", "attempt", "delay"),
    [
        (Backoff(), 1, 0),
        (Backoff(), 2, 1),
        (Backoff(), 3, 2),
        (Backoff(), 4, 4),
        (Backoff(), 11, 512),
        (Backoff(), 12, 600),
        (Backoff(), 10**9, 600),
        (Backoff(base=seconds(5), factor=3, cap=seconds(100)), 4, 45),
        (Backoff(base=seconds(5), factor=3, cap=seconds(100)), 5, 100),
        (Backoff(base=seconds(30), factor=1, cap=seconds(30)), 50, 30),
    ],
)
def test_backoff_grows_by_factor_from_base_up_to_the_cap(
    backoff: Backoff, attempt: int, delay: float
) -> None:
    assert backoff.delay(attempt) == seconds(delay)


def test_backoff_jitter_shortens_the_delay_by_at_most_its_fraction_deterministically() -> None:
    backoff = Backoff(jitter=0.5)
    delays = {backoff.delay(6, seed=f"run-{i}") for i in range(50)}
    assert all(seconds(8) < d <= seconds(16) for d in delays)
    assert len(delays) > 40
    assert backoff.delay(6, seed="run-7") == backoff.delay(6, seed="run-7")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base": seconds(0)}, "backoff base must be positive"),
        ({"factor": 0.5}, "backoff factor must be at least 1"),
        ({"factor": float("nan")}, "backoff factor must be at least 1"),
        ({"cap": seconds(0.5)}, "backoff cap 0:00:00.500000 is below its base 0:00:01"),
        ({"jitter": 1.5}, "backoff jitter must be between 0 and 1"),
        ({"jitter": -0.1}, "backoff jitter must be between 0 and 1"),
    ],
)
def test_bad_backoff_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_attempts_count_from_one() -> None:
    with pytest.raises(ScheduleError, match="attempt must be 1 or more, got 0"):
        Backoff().delay(0)


def test_jitter_is_the_same_for_the_same_job_and_instant_in_any_zone() -> None:
    berlin = FIRE.astimezone(ZoneInfo("Europe/Berlin"))
    assert jitter(7, FIRE, seconds(30)) == jitter(7, berlin, seconds(30))


def test_jitter_differs_between_jobs_and_fires() -> None:
    offsets = {jitter(job, FIRE, seconds(30)) for job in range(100)}
    offsets |= {jitter(1, FIRE + seconds(60 * k), seconds(30)) for k in range(100)}
    assert len(offsets) > 190


def test_no_jitter_means_no_offset_and_negative_jitter_is_refused() -> None:
    assert jitter(1, FIRE, timedelta(0)) == timedelta(0)
    with pytest.raises(ScheduleError, match="max jitter must not be negative"):
        jitter(1, FIRE, seconds(-1))


@settings(max_examples=200)
@given(
    job_id=st.integers(0, 2**63),
    offset=st.integers(0, 10**9),
    max_jitter=st.integers(1, 10**10).map(lambda us: timedelta(microseconds=us)),
)
def test_jitter_lies_in_zero_to_max(job_id: int, offset: int, max_jitter: timedelta) -> None:
    fire = FIRE + timedelta(seconds=offset)
    value = jitter(job_id, fire, max_jitter)
    assert timedelta(0) <= value < max_jitter
    assert value == jitter(job_id, fire, max_jitter)


@settings(max_examples=200)
@given(
    attempt=st.integers(1, 10**6),
    factor=st.floats(1, 10),
    share=st.floats(0, 1),
    seed=st.text(max_size=10),
)
def test_backoff_grows_stays_under_the_cap_and_jitter_only_shortens(
    attempt: int, factor: float, share: float, seed: str
) -> None:
    plain = Backoff(factor=factor)
    delay = Backoff(factor=factor, jitter=share).delay(attempt, seed=seed)
    assert plain.delay(attempt) * (1 - share) - timedelta(microseconds=1) <= delay
    assert delay <= plain.delay(attempt) <= plain.cap
    assert plain.delay(attempt + 1) >= plain.delay(attempt)
