from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import InvalidTransition
from common.states import FINAL, RunState, RunStatus, StatusEvent, apply_event, check_transition

S = RunState
T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)

# Every move forward within one attempt, direct or through intermediate states, as the
# module docstring draws it.
FORWARD: dict[RunState, set[RunState]] = {
    S.SCHEDULED: {S.QUEUED, S.RUNNING, S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.RETRYING,
                  S.CANCELLED, S.DEAD, S.SKIPPED},
    S.QUEUED: {S.RUNNING, S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.RETRYING, S.CANCELLED,
               S.DEAD, S.SKIPPED},
    S.RUNNING: {S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.RETRYING, S.CANCELLED, S.DEAD},
    S.FAILED: {S.RETRYING, S.DEAD, S.CANCELLED},
    S.TIMED_OUT: {S.RETRYING, S.DEAD, S.CANCELLED},
    S.RETRYING: {S.CANCELLED},
    S.SUCCEEDED: set(),
    S.CANCELLED: set(),
    S.DEAD: set(),
    S.SKIPPED: set(),
}
# Depth of each state in the (acyclic) transition graph: every forward move raises it.
RANK = {S.SCHEDULED: 0, S.QUEUED: 1, S.RUNNING: 2, S.SKIPPED: 2, S.SUCCEEDED: 3,
        S.FAILED: 3, S.TIMED_OUT: 3, S.RETRYING: 4, S.DEAD: 4, S.CANCELLED: 5}
NON_FINAL = [s for s in RunState if s not in FINAL]
# States in which a report of a new attempt is meaningful.
ATTEMPT_ENTRY = [s for s in RunState if s not in (S.SCHEDULED, S.RETRYING)]


def status(state: RunState, attempt: int = 1, **fields: object) -> RunStatus:
    return RunStatus(attempt=attempt, state=state, **fields)  # type: ignore[arg-type]


def event(state: RunState, attempt: int = 1, at: datetime = T0, **fields: object) -> StatusEvent:
    return StatusEvent(attempt=attempt, state=state, at=at, **fields)  # type: ignore[arg-type]


def position(s: RunStatus) -> tuple[int, int]:
    return s.attempt, RANK[s.state]


def test_the_final_states_are_succeeded_cancelled_dead_and_skipped() -> None:
    assert {S.SUCCEEDED, S.CANCELLED, S.DEAD, S.SKIPPED} == FINAL


def test_the_rank_used_by_the_properties_rises_on_every_forward_move() -> None:
    for current, targets in FORWARD.items():
        for target in targets:
            assert RANK[target] > RANK[current], (current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [(c, t) for c, targets in FORWARD.items() for t in sorted(targets)],
)
def test_a_forward_transition_is_allowed(current: RunState, target: RunState) -> None:
    check_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [(c, t) for c in RunState for t in RunState if t not in FORWARD[c]],
)
def test_every_other_transition_raises_invalid_transition(
        current: RunState, target: RunState) -> None:
    with pytest.raises(InvalidTransition, match=f"from {current} to {target}"):
        check_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [(S.SUCCEEDED, S.RUNNING), (S.RUNNING, S.QUEUED), (S.RUNNING, S.SCHEDULED),
     (S.FAILED, S.RUNNING), (S.RETRYING, S.QUEUED), (S.DEAD, S.RETRYING),
     (S.QUEUED, S.QUEUED), (S.FAILED, S.TIMED_OUT), (S.RUNNING, S.SKIPPED)],
)
def test_backward_sideways_and_self_moves_within_one_attempt_are_refused(
        current: RunState, target: RunState) -> None:
    with pytest.raises(InvalidTransition):
        check_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [(c, t) for c, targets in FORWARD.items() for t in sorted(targets)],
)
def test_an_event_moving_forward_within_the_attempt_is_applied(
        current: RunState, target: RunState) -> None:
    moved = apply_event(status(current, attempt=2), event(target, attempt=2))
    assert moved is not None
    assert (moved.attempt, moved.state) == (2, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [(c, t) for c in NON_FINAL for t in RunState if t not in FORWARD[c]],
)
def test_a_backward_or_duplicate_event_within_the_attempt_is_ignored(
        current: RunState, target: RunState) -> None:
    assert apply_event(status(current, attempt=2), event(target, attempt=2)) is None


@pytest.mark.parametrize("current", NON_FINAL)
@pytest.mark.parametrize("target", list(RunState))
def test_an_event_for_a_lower_attempt_is_ignored(current: RunState, target: RunState) -> None:
    assert apply_event(status(current, attempt=3), event(target, attempt=2)) is None


@pytest.mark.parametrize("current", NON_FINAL)
@pytest.mark.parametrize("target", ATTEMPT_ENTRY)
def test_a_higher_attempt_is_accepted_from_any_non_final_state(
        current: RunState, target: RunState) -> None:
    moved = apply_event(status(current, attempt=1), event(target, attempt=2))
    assert moved is not None
    assert (moved.attempt, moved.state) == (2, target)


@pytest.mark.parametrize("target", [S.SCHEDULED, S.RETRYING])
def test_a_higher_attempt_cannot_begin_scheduled_or_retrying(target: RunState) -> None:
    assert apply_event(status(S.FAILED, attempt=1), event(target, attempt=2)) is None


@pytest.mark.parametrize("current", sorted(FINAL))
@pytest.mark.parametrize("target", list(RunState))
@pytest.mark.parametrize("attempt", [1, 2, 5])
def test_nothing_moves_a_run_out_of_a_final_state(
        current: RunState, target: RunState, attempt: int) -> None:
    assert apply_event(status(current, attempt=2), event(target, attempt=attempt)) is None


def test_running_records_the_start_and_the_worker() -> None:
    moved = apply_event(status(S.QUEUED), event(S.RUNNING, worker="w1"))
    assert moved == RunStatus(attempt=1, state=S.RUNNING, started_at=T0, worker="w1")


def test_a_failure_keeps_the_start_and_records_the_end_exit_code_and_error() -> None:
    running = status(S.RUNNING, started_at=T0, worker="w1")
    end = T0 + timedelta(seconds=3)
    moved = apply_event(running, event(S.FAILED, at=end, exit_code=3, error="boom"))
    assert moved == RunStatus(attempt=1, state=S.FAILED, started_at=T0, finished_at=end,
                              worker="w1", exit_code=3, error="boom")


def test_a_fresh_attempt_forgets_the_previous_attempts_details() -> None:
    failed = status(S.RETRYING, started_at=T0, finished_at=T0 + timedelta(seconds=1),
                    worker="w1", exit_code=1, error="boom")
    later = T0 + timedelta(seconds=10)
    moved = apply_event(failed, event(S.RUNNING, attempt=2, at=later, worker="w2"))
    assert moved is not None
    assert (moved.attempt, moved.state, moved.started_at, moved.finished_at) == (
        2, S.RUNNING, later, None)
    assert (moved.worker, moved.exit_code, moved.error) == ("w2", None, None)


# --- properties -------------------------------------------------------------------------

events = st.builds(
    StatusEvent,
    attempt=st.integers(min_value=1, max_value=3),
    state=st.sampled_from(list(RunState)),
    at=st.integers(min_value=0, max_value=100).map(lambda s: T0 + timedelta(seconds=s)),
    worker=st.sampled_from([None, "w1", "w2"]),
    exit_code=st.sampled_from([None, 0, 1]),
)


def fold(start: RunStatus, sequence: list[StatusEvent]) -> RunStatus:
    current = start
    for e in sequence:
        moved = apply_event(current, e)
        if moved is not None:
            current = moved
    return current


@st.composite
def shuffled_events(draw: st.DrawFn) -> list[StatusEvent]:
    return draw(st.permutations(draw(st.lists(events, max_size=12))))


@st.composite
def legal_history(draw: st.DrawFn) -> list[StatusEvent]:
    """A run's real reports: failed attempts with retries, then an ending."""
    history: list[StatusEvent] = []
    attempts = draw(st.integers(min_value=1, max_value=3))
    at = T0
    for attempt in range(1, attempts + 1):
        last = attempt == attempts
        steps = [S.QUEUED, S.RUNNING]
        if last:
            steps += draw(st.sampled_from([[S.SUCCEEDED], [S.FAILED, S.DEAD],
                                           [S.TIMED_OUT, S.DEAD], [S.CANCELLED]]))
        else:
            steps += [draw(st.sampled_from([S.FAILED, S.TIMED_OUT])), S.RETRYING]
        for state in steps:
            at += timedelta(seconds=1)
            history.append(StatusEvent(attempt=attempt, state=state, at=at))
    return history


@settings(max_examples=300, deadline=None)
@given(sequence=shuffled_events())
def test_any_order_of_events_moves_a_run_only_forward_and_final_stays_final(
        sequence: list[StatusEvent]) -> None:
    current = status(S.SCHEDULED)
    for e in sequence:
        moved = apply_event(current, e)
        if moved is None:
            continue
        assert current.state not in FINAL
        assert position(moved) > position(current)
        assert (moved.attempt, moved.state) == (e.attempt, e.state)
        current = moved


@settings(max_examples=300, deadline=None)
@given(history=legal_history(), data=st.data())
def test_a_real_history_in_any_order_never_goes_backward(
        history: list[StatusEvent], data: st.DataObject) -> None:
    in_order = fold(status(S.SCHEDULED), history)
    assert (in_order.attempt, in_order.state) == (history[-1].attempt, history[-1].state)
    current = status(S.SCHEDULED)
    for e in data.draw(st.permutations(history)):
        moved = apply_event(current, e)
        if moved is not None:
            assert position(moved) > position(current)
            current = moved
    assert position(current) <= position(in_order)


@settings(max_examples=300, deadline=None)
@given(sequence=shuffled_events(), again=st.data())
def test_applying_an_event_twice_equals_applying_it_once(
        sequence: list[StatusEvent], again: st.DataObject) -> None:
    start = status(S.SCHEDULED)
    twice = again.draw(st.lists(st.booleans(), min_size=len(sequence),
                                max_size=len(sequence)))
    doubled = [e for e, dup in zip(sequence, twice, strict=True) for _ in range(1 + dup)]
    assert fold(start, doubled) == fold(start, sequence)
    reached = fold(start, sequence)
    for e in sequence:
        once = apply_event(reached, e) or reached
        assert apply_event(once, e) is None
