from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from common.db.dispatch import NewRun
from common.messages import RunMessage, decode, encode
from schedulerd.planner import TimerHeap, materialise, redelivery, run_message

NOW = datetime(2026, 5, 1, 10, 0, 0, tzinfo=UTC)


def sec(n: float) -> timedelta:
    return timedelta(seconds=n)


def job(**fields: Any) -> dict[str, Any]:
    """A jobs row as the leader reads it (only the columns the planner uses)."""
    row: dict[str, Any] = {
        "id": 7, "schedule_kind": "cron", "schedule_expr": "* * * * * *", "time_zone": "UTC",
        "dst_nonexistent": "shift", "dst_ambiguous": "once", "anchor_at": NOW - timedelta(days=1),
        "next_fire_at": NOW - sec(5), "misfire": "fire_once", "misfire_grace_s": 60.0,
        "jitter_s": 0.0, "priority": 5, "pool": "default",
    }
    row.update(fields)
    return row


def scheduled(runs: list[NewRun]) -> list[NewRun]:
    return [r for r in runs if r.state == "scheduled"]


def skipped(runs: list[NewRun]) -> list[NewRun]:
    return [r for r in runs if r.state == "skipped"]


# --- TimerHeap ------------------------------------------------------------------------------

def test_pop_due_returns_only_runs_due_by_now() -> None:
    heap = TimerHeap()
    heap.add(1, NOW - sec(1), 5)
    heap.add(2, NOW, 5)
    heap.add(3, NOW + sec(1), 5)
    assert sorted(heap.pop_due(NOW, limit=10)) == [1, 2]
    assert len(heap) == 1
    assert heap.pop_due(NOW, limit=10) == []
    assert heap.pop_due(NOW + sec(1), limit=10) == [3]
    assert len(heap) == 0


def test_pop_due_orders_due_runs_by_priority_then_due_time() -> None:
    heap = TimerHeap()
    heap.add(10, NOW - sec(3), 1)
    heap.add(11, NOW - sec(2), 9)
    heap.add(12, NOW - sec(1), 9)
    heap.add(13, NOW - sec(4), 5)
    heap.add(14, NOW + sec(1), 9)  # not due: priority does not make it early
    assert heap.pop_due(NOW, limit=10) == [11, 12, 13, 10]


def test_pop_due_with_a_limit_takes_the_most_urgent_due_runs() -> None:
    heap = TimerHeap()
    for run_id in range(1, 6):  # a backlog of low-priority runs due earlier
        heap.add(run_id, NOW - sec(10 - run_id), 0)
    heap.add(99, NOW - sec(1), 9)
    assert heap.pop_due(NOW, limit=2) == [99, 1]
    assert sorted(heap.pop_due(NOW, limit=10)) == [2, 3, 4, 5]


def test_pop_due_never_returns_more_than_the_limit() -> None:
    heap = TimerHeap()
    for run_id in range(20):
        heap.add(run_id, NOW - sec(run_id), run_id % 10)
    first = heap.pop_due(NOW, limit=7)
    assert len(first) == 7 and len(heap) == 13
    rest = heap.pop_due(NOW, limit=100)
    assert sorted(first + rest) == list(range(20))


def test_due_runs_left_by_a_limit_yield_to_more_urgent_runs_due_later() -> None:
    heap = TimerHeap()
    heap.add(1, NOW - sec(2), 0)
    heap.add(2, NOW - sec(2), 0)
    assert heap.pop_due(NOW, limit=1) == [1]
    heap.add(3, NOW + sec(1), 9)
    assert heap.next_due() == NOW - sec(2)  # a due run still waits: the leader must not sleep
    assert heap.pop_due(NOW + sec(1), limit=10) == [3, 2]
    assert heap.next_due() is None and len(heap) == 0


def test_a_run_added_twice_is_held_once() -> None:
    heap = TimerHeap()
    heap.add(1, NOW - sec(1), 5)
    heap.add(1, NOW - sec(9), 9)
    assert len(heap) == 1
    assert heap.next_due() == NOW - sec(1)
    assert heap.pop_due(NOW, limit=10) == [1]
    assert heap.pop_due(NOW, limit=10) == []


def test_a_popped_run_can_be_held_again() -> None:
    heap = TimerHeap()
    heap.add(1, NOW, 5)
    assert heap.pop_due(NOW, limit=1) == [1]
    heap.add(1, NOW + sec(5), 5)
    assert heap.next_due() == NOW + sec(5)


def test_next_due_is_the_earliest_due_time_or_none() -> None:
    heap = TimerHeap()
    assert heap.next_due() is None
    heap.add(1, NOW + sec(30), 9)
    heap.add(2, NOW + sec(10), 0)
    heap.add(3, NOW + sec(20), 5)
    assert heap.next_due() == NOW + sec(10)
    heap.pop_due(NOW + sec(10), limit=10)
    assert heap.next_due() == NOW + sec(20)


def test_clear_forgets_every_run_so_they_can_be_reloaded() -> None:
    heap = TimerHeap()
    heap.add(1, NOW, 5)
    heap.add(2, NOW, 5)
    heap.clear()
    assert len(heap) == 0 and heap.next_due() is None
    heap.add(1, NOW, 5)
    assert heap.pop_due(NOW, limit=10) == [1]


# --- redelivery -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("state", "run_attempt", "reported", "max_attempts", "expected"),
    [
        ("queued", 1, 1, 3, "republish"),
        ("queued", 3, 3, 3, "republish"),
        ("running", 1, 1, 3, "ignore"),  # its worker may live on: the leader decides
        ("failed", 2, 2, 3, "retry"),
        ("timed_out", 1, 1, 2, "retry"),
        ("retrying", 1, 1, 2, "ignore"),  # its retry message was confirmed before that
        ("running", 3, 3, 3, "ignore"),
        ("retrying", 1, 2, 3, "retry"),  # the retry message itself came back
        ("failed", 2, 3, 3, "retry"),
        ("retrying", 3, 4, 3, "bury"),
        ("failed", 3, 3, 3, "bury"),
        ("timed_out", 1, 1, 1, "bury"),
        ("timed_out", 2, 2, 2, "bury"),
        ("running", 2, 1, 3, "ignore"),
        ("queued", 2, 1, 3, "ignore"),
        ("running", 1, 2, 3, "ignore"),
        ("succeeded", 1, 1, 3, "ignore"),
        ("cancelled", 1, 1, 3, "ignore"),
        ("dead", 3, 3, 3, "ignore"),
        ("skipped", 1, 1, 3, "ignore"),
        ("scheduled", 1, 1, 3, "ignore"),
    ],
)
def test_redelivery_decides_from_the_databases_view_of_the_run(
        state: str, run_attempt: int, reported: int, max_attempts: int, expected: str) -> None:
    assert redelivery(state, run_attempt, reported, max_attempts, run_copy=2,
                      reported_copy=2) == expected


@pytest.mark.parametrize(("state", "run_attempt", "reported"), [
    ("queued", 1, 1),  # republished already: a second copy would run the attempt twice
    ("failed", 2, 2),
    ("retrying", 1, 2),
])
def test_a_report_about_a_copy_other_than_the_latest_changes_nothing(
        state: str, run_attempt: int, reported: int) -> None:
    acted = redelivery(state, run_attempt, reported, 3, run_copy=2, reported_copy=2)
    assert acted != "ignore"
    assert redelivery(state, run_attempt, reported, 3, run_copy=3, reported_copy=2) == "ignore"
    # A worker from before copies were numbered reports none: taken as the latest copy.
    assert redelivery(state, run_attempt, reported, 3, run_copy=3, reported_copy=None) == acted


# --- materialise ----------------------------------------------------------------------------

def test_a_per_second_cron_job_gets_a_run_for_every_second_up_to_the_horizon() -> None:
    plan = materialise([job()], now=NOW, horizon=NOW + sec(5))
    assert [r.scheduled_for for r in plan.runs] == [NOW + sec(s) for s in range(-5, 6)]
    assert all(r.state == "scheduled" and r.due_at == r.scheduled_for for r in plan.runs)
    assert all((r.job_id, r.priority, r.pool) == (7, 5, "default") for r in plan.runs)
    assert plan.cursors == [(7, NOW + sec(6))]
    assert plan.unrecorded_skips == 0


def test_the_cursor_continues_where_the_last_plan_stopped() -> None:
    first = materialise([job()], now=NOW, horizon=NOW + sec(5))
    cursor = first.cursors[0][1]
    second = materialise([job(next_fire_at=cursor)], now=NOW + sec(1), horizon=NOW + sec(8))
    assert [r.scheduled_for for r in second.runs] == [NOW + sec(s) for s in (6, 7, 8)]
    assert second.cursors == [(7, NOW + sec(9))]


def test_fire_once_after_downtime_gives_one_catch_up_run_and_records_the_skips() -> None:
    row = job(schedule_expr="* * * * *", next_fire_at=NOW - timedelta(minutes=10),
              misfire_grace_s=0.0)
    plan = materialise([row], now=NOW, horizon=NOW + sec(5))
    assert [r.scheduled_for for r in scheduled(plan.runs)] == [NOW - sec(60), NOW]
    missed = skipped(plan.runs)
    assert [r.scheduled_for for r in missed] == [NOW - timedelta(minutes=m)
                                                 for m in range(10, 1, -1)]
    assert all(r.due_at == r.scheduled_for for r in missed)
    assert missed[0].reason == "misfire: 600 s late, policy fire_once"
    assert missed[-1].reason == "misfire: 120 s late, policy fire_once"
    assert plan.cursors == [(7, NOW + sec(60))]


def test_fires_within_the_misfire_grace_are_all_run() -> None:
    row = job(schedule_expr="* * * * *", next_fire_at=NOW - timedelta(minutes=3),
              misfire_grace_s=300.0)
    plan = materialise([row], now=NOW, horizon=NOW + sec(5))
    assert [r.scheduled_for for r in plan.runs] == [NOW - timedelta(minutes=m)
                                                    for m in (3, 2, 1, 0)]
    assert skipped(plan.runs) == []


def test_the_skip_policy_runs_no_missed_fire() -> None:
    row = job(schedule_kind="every", schedule_expr="every 1 minute",
              anchor_at=NOW - timedelta(hours=1), next_fire_at=NOW - timedelta(minutes=5),
              misfire="skip", misfire_grace_s=0.0)
    plan = materialise([row], now=NOW, horizon=NOW + sec(5))
    assert [r.scheduled_for for r in scheduled(plan.runs)] == [NOW]
    assert len(skipped(plan.runs)) == 5
    assert all(r.reason and r.reason.endswith("policy skip") for r in skipped(plan.runs))


def test_the_fire_all_policy_runs_every_missed_fire() -> None:
    row = job(schedule_expr="* * * * *", next_fire_at=NOW - timedelta(minutes=3),
              misfire="fire_all", misfire_grace_s=0.0)
    plan = materialise([row], now=NOW, horizon=NOW + sec(5))
    assert [r.scheduled_for for r in plan.runs] == [NOW - timedelta(minutes=m)
                                                    for m in (3, 2, 1, 0)]


def test_an_at_job_fires_once_and_then_has_no_cursor() -> None:
    row = job(schedule_kind="at", schedule_expr="2026-05-01T10:00:02+00:00",
              next_fire_at=NOW + sec(2))
    plan = materialise([row], now=NOW, horizon=NOW + sec(5))
    assert [(r.scheduled_for, r.state) for r in plan.runs] == [(NOW + sec(2), "scheduled")]
    assert plan.cursors == [(7, None)]


def test_an_at_job_beyond_the_horizon_waits_with_its_cursor_unchanged() -> None:
    row = job(schedule_kind="at", schedule_expr="2026-05-01T11:00:00+00:00",
              next_fire_at=NOW + timedelta(hours=1))
    plan = materialise([row], now=NOW, horizon=NOW + sec(5))
    assert plan.runs == []
    assert plan.cursors == [(7, NOW + timedelta(hours=1))]


def test_an_at_job_missed_long_ago_still_runs_once_under_fire_once() -> None:
    row = job(schedule_kind="at", schedule_expr="2026-05-01T09:00:00+00:00",
              next_fire_at=NOW - timedelta(hours=1))
    plan = materialise([row], now=NOW, horizon=NOW + sec(5))
    assert [(r.scheduled_for, r.state) for r in plan.runs] == [
        (NOW - timedelta(hours=1), "scheduled")]
    assert plan.cursors == [(7, None)]


def test_jitter_delays_each_run_within_its_window_the_same_way_every_time() -> None:
    row = job(jitter_s=0.8, priority=9, pool="gpu")
    plan = materialise([row], now=NOW, horizon=NOW + sec(20))
    assert len(plan.runs) == 26
    offsets = [r.due_at - r.scheduled_for for r in plan.runs]
    assert all(timedelta(0) <= o < sec(0.8) for o in offsets)
    assert len(set(offsets)) > 1  # spread, not one constant delay
    assert [r.scheduled_for for r in plan.runs] == [NOW + sec(s) for s in range(-5, 21)]
    assert all((r.priority, r.pool) == (9, "gpu") for r in plan.runs)
    again = materialise([row], now=NOW, horizon=NOW + sec(20))
    assert again.runs == plan.runs


def test_jitter_differs_between_jobs_firing_at_the_same_time() -> None:
    a = materialise([job(id=1, jitter_s=60.0)], now=NOW, horizon=NOW + sec(5)).runs
    b = materialise([job(id=2, jitter_s=60.0)], now=NOW, horizon=NOW + sec(5)).runs
    assert [r.scheduled_for for r in a] == [r.scheduled_for for r in b]
    assert [r.due_at for r in a] != [r.due_at for r in b]


def test_each_job_gets_its_own_runs_and_cursor() -> None:
    rows = [job(id=1, next_fire_at=NOW + sec(3)),
            job(id=2, schedule_expr="*/10 * * * * *", next_fire_at=NOW, priority=2)]
    plan = materialise(rows, now=NOW, horizon=NOW + sec(5))
    assert [(r.job_id, r.scheduled_for) for r in plan.runs] == [
        (1, NOW + sec(3)), (1, NOW + sec(4)), (1, NOW + sec(5)), (2, NOW)]
    assert plan.cursors == [(1, NOW + sec(6)), (2, NOW + sec(10))]


def test_no_jobs_give_an_empty_plan() -> None:
    plan = materialise([], now=NOW, horizon=NOW + sec(5))
    assert (plan.runs, plan.cursors, plan.unrecorded_skips) == ([], [], 0)


# --- run_message ----------------------------------------------------------------------------

def claimed(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run_id": 41, "job_id": 7, "scheduled_for": NOW, "attempt": 1, "pool": "default",
        "priority": 5, "job_type": "shell", "payload": {"command": "echo hi", "env": {}},
        "max_attempts": 3, "timeout_s": 30.0, "concurrency": "forbid",
        "start_deadline_s": 120.0, "backoff_base_s": 1.0, "backoff_factor": 2.0,
        "backoff_cap_s": 600.0, "backoff_jitter": 0.25, "epoch": 12, "dispatch": 2,
    }
    row.update(fields)
    return row


def test_a_run_message_carries_the_claimed_run_and_its_jobs_settings() -> None:
    message = run_message(claimed(due_at=NOW))
    assert message == RunMessage(
        run_id=41, job_id=7, scheduled_for=NOW, attempt=1, max_attempts=3, job_type="shell",
        payload={"command": "echo hi", "env": {}}, pool="default", priority=5,
        concurrency="forbid", timeout_s=30.0,
        backoff={"base": 1.0, "factor": 2.0, "cap": 600.0, "jitter": 0.25}, epoch=12,
        start_deadline=NOW + sec(120), not_before=NOW, dispatch=2)
    assert message.attempt_id == "41.1"


def test_a_first_attempt_claimed_with_its_due_time_must_not_start_before_it() -> None:
    # The leader dispatches up to `dispatch_ahead` early; the worker holds it until due.
    assert run_message(claimed(due_at=NOW + sec(3))).not_before == NOW + sec(3)


def test_a_run_without_a_start_deadline_has_none() -> None:
    assert run_message(claimed(start_deadline_s=None, due_at=NOW)).start_deadline is None


def test_the_start_deadline_counts_from_the_due_time_with_its_jitter() -> None:
    # Fired at NOW, jittered to NOW + 7 s: the 120 s deadline ends at NOW + 127 s, as the
    # leader's claim counts it (from scheduled_for it would end 7 s early on the worker).
    message = run_message(claimed(due_at=NOW + sec(7)))
    assert message.start_deadline == NOW + sec(127)


def test_a_later_attempt_carries_no_start_deadline() -> None:
    # A retry re-dispatched by the leader (its worker was lost) starts when it can: the
    # deadline binds the run's first start only.
    assert run_message(claimed(attempt=2, due_at=NOW)).start_deadline is None
    assert run_message(claimed(attempt=2)).start_deadline is None


def test_a_run_message_survives_the_wire() -> None:
    message = run_message(claimed(timeout_s=None))
    assert decode(encode(message)) == message
