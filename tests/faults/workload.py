"""The fault workload: a steady mix of job kinds that keeps runs in every state while a
scenario breaks things.

Standing jobs (created at start): seconds-level crons and intervals, fast and slow,
`allow` and `forbid`, one that fails its first attempt, one that always fails, and three
with a 2 s misfire grace (fire_once, skip, fire_all) so an outage shows the policy. A
feeder thread adds immediate (`now`) and one-off (`at`) jobs every second; `burst()` adds
many `at` jobs due together (heavy dispatch). Every job is a shell job writing the ledger.
A scenario that needs a quiet cluster starts the workload without standing jobs and feeder
and creates only its own jobs.

A job's name is ``wl-<role>-<n>``; the role says how it behaves (ROLES), so the checker
needs nothing but the jobs table and the ledger, even for a job whose creation raised.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from common import jobops
from common.db import Database
from common.errors import ZeitplanError
from common.jobs import JobSpec
from tests.faults.ledger import Behaviour, Ledger

SOAK = os.environ.get("ZEITPLAN_SOAK", "") not in ("", "0")
SCALE = 4.0 if SOAK else 1.0
PREFIX = "wl-"


def phase(seconds: float) -> float:
    """A phase of a scenario: as given for `make test`, four times longer for `make soak`."""
    return seconds * SCALE


@dataclass(frozen=True)
class Role:
    """One kind of workload job."""

    kind: str
    expr: str
    behaviour: Behaviour = Behaviour()
    options: dict[str, Any] = field(default_factory=dict)


FAST_RETRY = {"max_attempts": 2, "backoff_base_s": 0.5}
ROLES: dict[str, Role] = {
    # standing jobs
    "tick": Role("cron", "* * * * * *", options=FAST_RETRY),
    "tick2-slow": Role("cron", "*/2 * * * * *", Behaviour(slow=2.5), FAST_RETRY),
    "every3": Role("every", "every 3s", options=FAST_RETRY),
    "every5-slow": Role("every", "every 5s", Behaviour(slow=4.0), FAST_RETRY),
    "forbid-tick": Role("cron", "* * * * * *", Behaviour(slow=1.3),
                        {**FAST_RETRY, "concurrency": "forbid"}),
    "forbid-every2": Role("every", "every 2s", Behaviour(slow=2.5),
                          {**FAST_RETRY, "concurrency": "forbid"}),
    "flaky": Role("cron", "*/3 * * * * *", Behaviour(fail_until=2),
                  {"max_attempts": 3, "backoff_base_s": 0.5}),
    "doomed": Role("every", "every 6s", Behaviour(fail_until=99),
                   {"max_attempts": 2, "backoff_base_s": 0.5}),
    "late-once": Role("cron", "*/2 * * * * *", options={
        **FAST_RETRY, "misfire": "fire_once", "misfire_grace_s": 2.0}),
    "late-skip": Role("cron", "*/2 * * * * *", options={
        **FAST_RETRY, "misfire": "skip", "misfire_grace_s": 2.0}),
    "late-all": Role("cron", "*/2 * * * * *", options={
        **FAST_RETRY, "misfire": "fire_all", "misfire_grace_s": 2.0}),
    # fed while the workload runs (expr filled in at creation)
    "now": Role("now", "now", options=FAST_RETRY),
    "now-slow": Role("now", "now", Behaviour(slow=2.0), FAST_RETRY),
    "at": Role("at", "", options=FAST_RETRY),
    "at-flaky": Role("at", "", Behaviour(fail_until=2), {"max_attempts": 3,
                                                          "backoff_base_s": 0.5}),
    "burst": Role("at", "", options=FAST_RETRY),
    "burst-1s": Role("at", "", Behaviour(slow=1.0), FAST_RETRY),
    "at-flaky-slow": Role("at", "", Behaviour(slow=3.0, fail_until=2), {
        "max_attempts": 3, "backoff_base_s": 0.5}),
    "at-doomed-slow": Role("at", "", Behaviour(slow=3.0, fail_until=99), {
        "max_attempts": 2, "backoff_base_s": 0.5}),
}
STANDING = ("tick", "tick2-slow", "every3", "every5-slow", "forbid-tick", "forbid-every2",
            "flaky", "doomed", "late-once", "late-skip", "late-all")


def role_of(name: str) -> Role | None:
    """The role of a workload job's name (None for anything else)."""
    if not name.startswith(PREFIX):
        return None
    return ROLES.get(name[len(PREFIX):].rsplit("-", 1)[0])


class Workload:
    """Creates the standing jobs, then feeds new ones until stopped."""

    def __init__(self, db: Database, ledger: Ledger, *, feed_interval: float = 1.0) -> None:
        self.db = db
        self.ledger = ledger
        self.feed_interval = feed_interval
        self.started: datetime | None = None
        self.ended: datetime | None = None
        self.created = 0
        self.creation_errors: list[str] = []
        self._serial = 0
        self._stop = threading.Event()
        self._feeder = threading.Thread(target=self._feed, name="workload-feeder", daemon=True)

    def start(self, *, steady: bool = True) -> None:
        """Create the standing jobs and start feeding (unless not `steady`)."""
        self.started = datetime.now(UTC)
        if not steady:
            return
        for role in STANDING:
            self.create(role)
        self._feeder.start()

    def stop(self) -> datetime:
        """Stop feeding; returns the end of the checked window."""
        self._stop.set()
        if self._feeder.is_alive():
            self._feeder.join(30)
        self.ended = datetime.now(UTC)
        return self.ended

    def run_for(self, seconds: float) -> None:
        """Let the workload run (the scenario's clock; the feeder works meanwhile)."""
        self._stop.wait(seconds)

    def create(self, role: str, at: datetime | None = None) -> int | None:
        """Create one job of `role`; None when the database refused (counted, not fatal:
        the checker reads the jobs table, so a job created by a failed call still counts)."""
        spec_role = ROLES[role]
        self._serial += 1
        spec = JobSpec(
            name=f"{PREFIX}{role}-{self._serial}", job_type="shell",
            payload={"argv": self.ledger.argv(spec_role.behaviour)},
            schedule_kind=spec_role.kind,
            schedule_expr=at.isoformat() if at is not None else spec_role.expr,
            **spec_role.options)
        try:
            job, _ = jobops.create_job(self.db, spec, actor="faults")
        except ZeitplanError as exc:
            self.creation_errors.append(f"{spec.name}: {exc}")
            return None
        self.created += 1
        return int(job["id"])

    def burst(self, count: int, first: datetime, spread: float, role: str = "burst") -> int:
        """`count` one-off jobs of `role` due from `first` over `spread` seconds; returns
        how many."""
        made = 0
        for n in range(count):
            at = first + timedelta(seconds=spread * n / max(1, count))
            made += self.create(role, at) is not None
        return made

    def _feed(self) -> None:
        n = 0
        while not self._stop.wait(self.feed_interval):
            n += 1
            self.create("now-slow" if n % 5 == 0 else "now")
            due = datetime.now(UTC) + timedelta(seconds=2 + n % 4)
            self.create("at-flaky" if n % 4 == 0 else "at", due)


def wait_until(deadline: float) -> None:
    """Sleep until the monotonic `deadline` (a scenario phase boundary)."""
    time.sleep(max(0.0, deadline - time.monotonic()))
