"""Compare what should have run (the jobs' schedules), what PostgreSQL says ran (runs) and
what did run (the ledger).

Findings, each a list of human lines:

- lost: a fire time up to the window's end without a run; a run that should have executed
  but did not (cancelled, skipped for no policy's reason, dead without failing, succeeded
  without a successful execution);
- duplicated: one attempt of one run executed twice, or a run that succeeded and was
  executed again, unless the earlier execution was on a worker the scenario killed or cut
  off (those retries are the design, and are counted as `retried`);
- overlaps: two executions of one `forbid` job at the same time;
- stuck: a run in the window not in a final state;
- mismatched: PostgreSQL and the ledger disagree (a skipped run that ran, an attempt the
  database never heard of, an execution that never ended on a healthy worker);
- unexpected: a run at a time its schedule never fires.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from common.db import Database
from common.jobs import schedule_of
from common.states import FINAL
from tests.faults.ledger import Execution, Ledger
from tests.faults.workload import PREFIX, role_of

LATE = 1.5  # seconds after its fire time: a start later than this is late
FINAL_STATES = {str(state) for state in FINAL}


@dataclass
class Report:
    """The checker's findings and figures."""

    runs_checked: int = 0
    executions: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    misfire_skipped: int = 0
    overlap_skipped: int = 0
    recovery: float | None = None
    max_delay: float = 0.0

    @property
    def settled(self) -> bool:
        """Nothing is missing or unfinished any more (the checks may still find faults)."""
        return not self.stuck and not any(line.startswith("missing") for line in self.lost)

    def problems(self) -> list[str]:
        """Every finding that breaks a guarantee."""
        return [f"{kind}: {line}" for kind, lines in (
            ("lost", self.lost), ("duplicated", self.duplicated), ("overlap", self.overlaps),
            ("stuck", self.stuck), ("mismatch", self.mismatched),
            ("unexpected", self.unexpected)) for line in lines]

    def figures(self) -> str:
        """One line of figures for the test's output."""
        recovery = "n/a" if self.recovery is None else f"{self.recovery:.2f} s"
        states = ", ".join(f"{k} {v}" for k, v in sorted(self.states.items()))
        return (f"runs checked {self.runs_checked}, executions {self.executions}, "
                f"lost {len(self.lost)}, duplicated {len(self.duplicated)}, "
                f"overlaps {len(self.overlaps)}, stuck {len(self.stuck)}, "
                f"mismatched {len(self.mismatched)}, unexpected {len(self.unexpected)}, "
                f"retried after worker loss {len(self.retried)}, misfire-skipped "
                f"{self.misfire_skipped}, overlap-skipped {self.overlap_skipped}, "
                f"max start delay {self.max_delay:.2f} s, recovery {recovery} [{states}]")


@dataclass(frozen=True)
class Faults:
    """What the scenario did: workers killed or cut off (name -> when, epoch seconds), and
    the moment recovery is measured from."""

    lost_workers: dict[str, float] = field(default_factory=dict)
    recovery_from: float | None = None


def check(db: Database, ledger: Ledger, window_end: datetime, faults: Faults) -> Report:
    """One full comparison of schedules, runs and ledger up to `window_end`."""
    with db.transaction() as conn:
        jobs = conn.execute("SELECT * FROM jobs WHERE name LIKE %s ORDER BY id",
                            (PREFIX + "%",)).fetchall()
        runs = conn.execute(
            "SELECT r.* FROM runs r JOIN jobs j ON j.id = r.job_id WHERE j.name LIKE %s",
            (PREFIX + "%",)).fetchall()
    return analyse(jobs, runs, ledger.read(), window_end, faults)


def analyse(jobs: list[dict[str, Any]], runs: list[dict[str, Any]],
            book: dict[int, list[Execution]], window_end: datetime, faults: Faults) -> Report:
    """The comparison itself (pure): job rows, run rows, the ledger's executions by run."""
    report = Report()
    by_key = {(r["job_id"], r["scheduled_for"]): r for r in runs}
    by_job: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_job[run["job_id"]].append(run)
    for job in jobs:
        role = role_of(job["name"])
        if role is None:
            continue
        expected = _fires(job, window_end)
        for fire in expected:
            found = by_key.get((job["id"], fire))
            report.runs_checked += 1
            if found is None:
                report.lost.append(f"missing: no run of {job['name']} for {fire.isoformat()}")
                continue
            _check_run(report, job, found, book.get(found["id"], []), faults)
        wanted = set(expected)
        for run in by_job[job["id"]]:
            if run["scheduled_for"] <= window_end and run["scheduled_for"] not in wanted:
                report.unexpected.append(f"run {run['id']} of {job['name']} at "
                                         f"{run['scheduled_for'].isoformat()}")
        if job["concurrency"] == "forbid":
            executions = [e for r in by_job[job["id"]] for e in book.get(r["id"], [])]
            _check_overlaps(report, job["name"], executions, faults)
    _timeliness(report, jobs, runs, book, window_end, faults)
    return report


def _fires(job: dict[str, Any], window_end: datetime) -> list[datetime]:
    schedule = schedule_of(job)
    fires: list[datetime] = []
    fire = schedule.first_fire(job["anchor_at"])
    while fire is not None and fire <= window_end:
        fires.append(fire)
        fire = schedule.next_after(fire)
    return fires


def _check_run(report: Report, job: dict[str, Any], run: dict[str, Any],
               executions: list[Execution], faults: Faults) -> None:
    role = role_of(job["name"])
    assert role is not None
    label = f"run {run['id']} of {job['name']} ({run['scheduled_for']:%H:%M:%S.%f})"
    state, attempt = run["state"], run["attempt"]
    report.states[state] += 1
    report.executions += len(executions)
    if state not in FINAL_STATES:
        report.stuck.append(f"{label} is {state} (attempt {attempt})")
        return
    lost_worker = faults.lost_workers
    per_attempt: dict[int, list[Execution]] = defaultdict(list)
    for execution in executions:
        per_attempt[execution.attempt].append(execution)
        if execution.attempt > attempt:
            report.mismatched.append(f"{label}: attempt {execution.attempt} ran on "
                                     f"{execution.worker}; the database stops at {attempt}")
        if not execution.finished and execution.worker not in lost_worker:
            report.mismatched.append(f"{label}: attempt {execution.attempt} never ended on "
                                     f"{execution.worker}, which was not harmed")
    for number, same in sorted(per_attempt.items()):
        if len(same) > 1:
            where = ", ".join(e.worker for e in same)
            report.duplicated.append(f"{label}: attempt {number} executed {len(same)} times "
                                     f"({where})")
    successes = [e for e in executions if e.finished and e.exit_code == 0]
    by_lost = [e for e in executions if e.worker in lost_worker
               and (not e.finished or e.end is None or e.end >= lost_worker[e.worker] - 1)]
    if len(successes) > 1:
        healthy = [e for e in successes if e not in by_lost]
        if len(healthy) > 1 or len(successes) - len(healthy) > 1:
            report.duplicated.append(f"{label}: succeeded {len(successes)} times (attempts "
                                     f"{[e.attempt for e in successes]})")
    if by_lost and len(executions) > 1:
        report.retried.append(f"{label}: attempts {[e.attempt for e in executions]} on "
                              f"{[e.worker for e in executions]}")
    reason = run["reason"] or ""
    doomed = role.behaviour.fail_until > job["max_attempts"]
    if state == "succeeded":
        if not any(e.attempt == attempt for e in successes):
            report.lost.append(f"{label} is succeeded at attempt {attempt} but the ledger has "
                               f"{_describe(executions)}")
    elif state == "dead":
        if not doomed:
            report.lost.append(f"{label} is dead ({reason}) but its job does not fail; "
                               f"ledger: {_describe(executions)}")
        elif successes:
            report.mismatched.append(f"{label} is dead but an attempt succeeded")
        elif not per_attempt.get(attempt) and not any(not e.finished for e in executions):
            report.mismatched.append(f"{label} is dead at attempt {attempt}, which the ledger "
                                     f"never saw: {_describe(executions)}")
    elif state == "skipped":
        if reason.startswith("misfire") and job["misfire"] != "fire_all":
            report.misfire_skipped += 1
            if executions:
                report.mismatched.append(f"{label} was skipped ({reason}) but ran")
        elif reason.startswith("overlap") and job["concurrency"] != "allow":
            report.overlap_skipped += 1
            if successes and not all(e in by_lost for e in successes):
                report.mismatched.append(f"{label} is skipped ({reason}) but it ran to the "
                                         f"end: {_describe(executions)}")
        else:
            report.lost.append(f"{label} was skipped: {reason}")
    else:  # cancelled: nobody cancels in the workload
        report.lost.append(f"{label} is {state}: {reason}")


def _check_overlaps(report: Report, name: str, executions: list[Execution],
                    faults: Faults) -> None:
    """Executions of one forbid job must not overlap; one that never ended ends when its
    worker was lost (its processes were killed with it)."""
    spans = []
    for e in executions:
        end = e.end if e.end is not None else faults.lost_workers.get(e.worker, e.start)
        spans.append((e.start, end, e))
    spans.sort(key=lambda s: s[0])
    latest_end, latest = float("-inf"), None
    for start, end, e in spans:
        if latest is not None and start < latest_end:
            report.overlaps.append(
                f"{name}: run {e.run_id}.{e.attempt} on {e.worker} started {start:.3f} "
                f"before run {latest.run_id}.{latest.attempt} on {latest.worker} ended "
                f"{latest_end:.3f}")
        if end > latest_end:
            latest_end, latest = end, e


def _timeliness(report: Report, jobs: list[dict[str, Any]], runs: list[dict[str, Any]],
                book: dict[int, list[Execution]], window_end: datetime,
                faults: Faults) -> None:
    """The worst start delay of a first attempt, and the recovery time: from the fault
    until the last late start (more than LATE after its fire time) of a scheduled (cron or
    interval) run due after the fault; 0 when none was late."""
    periodic = {j["id"] for j in jobs if j["schedule_kind"] in ("cron", "every")}
    since = faults.recovery_from
    last_late: float | None = None
    for run in runs:
        if run["scheduled_for"] > window_end:
            continue
        fire = run["scheduled_for"].timestamp()
        for e in book.get(run["id"], []):
            if e.attempt != 1:
                continue
            delay = e.start - fire
            report.max_delay = max(report.max_delay, delay)
            if (since is not None and run["job_id"] in periodic and fire >= since
                    and delay > LATE and (last_late is None or e.start > last_late)):
                last_late = e.start
    if since is not None:
        report.recovery = 0.0 if last_late is None else last_late - since


def _describe(executions: list[Execution]) -> str:
    if not executions:
        return "no execution"
    return "; ".join(f"attempt {e.attempt} on {e.worker} "
                     f"{'exit ' + str(e.exit_code) if e.finished else 'unfinished'}"
                     for e in executions)


def settle(db: Database, ledger: Ledger, window_end: datetime, faults: Faults,
           timeout: float) -> tuple[Report, float]:
    """Check until every run in the window is final and none is missing, or `timeout`
    passes; returns the last report and how long it took."""
    began = time.monotonic()
    while True:
        report = check(db, ledger, window_end, faults)
        if report.settled or time.monotonic() - began > timeout:
            return report, time.monotonic() - began
        time.sleep(1.0)



def retry_latency(ledger: Ledger, worker: str, since: float) -> float | None:
    """Longest wait from `since` until an attempt left unfinished on `worker` was followed
    by another execution of its run (None when nothing interrupted was executed again)."""
    worst: float | None = None
    for executions in ledger.read().values():
        cut = [e for e in executions if e.worker == worker and not e.finished]
        if not cut:
            continue
        later = [e.start for e in executions if e.start > cut[0].start and e not in cut]
        if not later:
            # No attempt left (the run is dead, which the verdict checks) or not retried:
            # the verdict's lost and stuck counts say which.
            continue
        wait = min(later) - since
        worst = wait if worst is None else max(worst, wait)
    return worst
