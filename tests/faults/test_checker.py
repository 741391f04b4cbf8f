"""The checker on hand-made rows and ledgers: each finding it should make, and none on a
clean history (no services needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.faults.checker import Faults, Report, analyse
from tests.faults.ledger import Execution, parse

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
END = T0 + timedelta(seconds=3)
BASE = T0.timestamp()


def job(job_id: int, role: str = "tick", expr: str = "* * * * * *", kind: str = "cron",
        **fields: Any) -> dict[str, Any]:
    return {"id": job_id, "name": f"wl-{role}-{job_id}", "schedule_kind": kind,
            "schedule_expr": expr, "time_zone": "UTC", "dst_nonexistent": "shift",
            "dst_ambiguous": "once", "anchor_at": T0, "concurrency": "allow",
            "misfire": "fire_once", "max_attempts": 2, **fields}


def run(run_id: int, job_id: int, second: int, state: str = "succeeded", attempt: int = 1,
        reason: str | None = None) -> dict[str, Any]:
    return {"id": run_id, "job_id": job_id, "scheduled_for": T0 + timedelta(seconds=second),
            "state": state, "attempt": attempt, "reason": reason}


def ran(run_id: int, second: float, *, attempt: int = 1, worker: str = "worker-1",
        took: float | None = 0.1, rc: int = 0) -> Execution:
    start = BASE + second
    return Execution(run_id, attempt, worker, start, None if took is None else start + took,
                     None if took is None else rc)


def clean_tick() -> tuple[list[dict[str, Any]], dict[int, list[Execution]]]:
    runs = [run(n, 1, n) for n in range(4)]
    return runs, {n: [ran(n, n + 0.05)] for n in range(4)}


def check(jobs: list[dict[str, Any]], runs: list[dict[str, Any]],
          book: dict[int, list[Execution]], faults: Faults | None = None) -> Report:
    return analyse(jobs, runs, book, END, faults or Faults(recovery_from=BASE))


def test_a_clean_history_has_no_findings_and_every_fire_is_counted() -> None:
    runs, book = clean_tick()
    report = check([job(1)], runs, book)
    assert report.problems() == []
    assert report.runs_checked == 4 and report.executions == 4 and report.recovery == 0.0


def test_a_fire_time_without_a_run_is_lost() -> None:
    runs, book = clean_tick()
    report = check([job(1)], runs[:2] + runs[3:], book)
    assert [line.split(":")[0] for line in report.lost] == ["missing"]
    assert not report.settled


def test_one_attempt_executed_twice_is_a_duplicate_even_on_a_lost_worker() -> None:
    runs, book = clean_tick()
    book[2] = [ran(2, 2.05, worker="worker-1"), ran(2, 2.5, worker="worker-2")]
    report = check([job(1)], runs, book, Faults(lost_workers={"worker-1": BASE + 2.1}))
    assert len([d for d in report.duplicated if "attempt 1 executed 2 times" in d]) == 1


def test_a_second_attempt_after_a_success_is_a_duplicate_unless_its_worker_was_lost() -> None:
    runs, book = clean_tick()
    runs[2] = run(2, 1, 2, attempt=2)
    book[2] = [ran(2, 2.05), ran(2, 3.0, attempt=2, worker="worker-2")]
    assert any("succeeded 2 times" in d for d in check([job(1)], runs, book).duplicated)
    excused = check([job(1)], runs, book, Faults(lost_workers={"worker-1": BASE + 2.5}))
    assert excused.problems() == [] and len(excused.retried) == 1


def test_an_attempt_cut_short_on_a_killed_worker_and_retried_is_fine() -> None:
    runs, book = clean_tick()
    runs[1] = run(1, 1, 1, attempt=2)
    book[1] = [ran(1, 1.05, took=None), ran(1, 2.0, attempt=2, worker="worker-2")]
    faults = Faults(lost_workers={"worker-1": BASE + 1.5}, recovery_from=BASE)
    report = check([job(1)], runs, book, faults)
    assert report.problems() == [] and len(report.retried) == 1
    unharmed = check([job(1)], runs, book)
    assert any("never ended" in m for m in unharmed.mismatched)


def test_overlapping_executions_of_a_forbid_job_are_found() -> None:
    runs, book = clean_tick()
    book[1] = [ran(1, 1.05, took=1.5)]
    forbid = job(1, role="forbid-tick", concurrency="forbid")
    assert len(check([forbid], runs, book).overlaps) == 1
    assert check([job(1)], runs, book).overlaps == []  # allow may overlap


def test_a_run_not_in_a_final_state_is_stuck() -> None:
    runs, book = clean_tick()
    runs[3] = run(3, 1, 3, state="retrying")
    report = check([job(1)], runs, book)
    assert len(report.stuck) == 1 and not report.settled


@pytest.mark.parametrize(("state", "reason", "finding"), [
    ("succeeded", None, "lost"),           # the database says it ran; the ledger does not
    ("dead", "worker lost", "lost"),       # the job never fails
    ("skipped", "overlap forbidden", "lost"),  # an allow job is never skipped for overlap
    ("skipped", "misfire: 90 s late, policy skip", None),
    ("cancelled", "job cancelled", "lost"),
])
def test_final_states_are_checked_against_the_ledger(state: str, reason: str | None,
                                                      finding: str | None) -> None:
    runs, book = clean_tick()
    runs[1] = run(1, 1, 1, state=state, reason=reason)
    del book[1]
    report = check([job(1)], runs, book)
    assert [p.split(":")[0] for p in report.problems()] == ([finding] if finding else [])


def test_a_doomed_job_may_end_dead_once_every_attempt_failed() -> None:
    doomed = job(7, role="doomed", expr="every 2s", kind="every")
    runs = [run(70, 7, 0, state="dead", attempt=2, reason="failed 2 of 2 attempts"),
            run(71, 7, 2, state="dead", attempt=2, reason="failed 2 of 2 attempts")]
    book = {70: [ran(70, 0.1, rc=3), ran(70, 1.0, attempt=2, rc=3)],
            71: [ran(71, 2.1, rc=3), ran(71, 3.0, attempt=2, rc=3)]}
    assert check([doomed], runs, book).problems() == []


def test_recovery_is_the_last_late_start_after_the_fault() -> None:
    runs, book = clean_tick()
    book[2] = [ran(2, 4.0)]  # 2 s late
    report = check([job(1)], runs, book, Faults(recovery_from=BASE + 1.5))
    assert report.recovery == pytest.approx(2.5)
    assert report.max_delay == pytest.approx(2.0)


def test_the_ledger_pairs_start_and_end_lines_per_attempt_and_worker() -> None:
    text = ("S 1 10.0 worker-1\nS 1 10.5 worker-2\nE 1 11.0 worker-2 0\n"
            "S 2 12.0 worker-2\nE 2 13.0 worker-2 3\n")
    executions = parse(5, text)
    assert [(e.attempt, e.worker, e.end, e.exit_code) for e in executions] == [
        (1, "worker-1", None, None), (1, "worker-2", 11.0, 0), (2, "worker-2", 13.0, 3)]
