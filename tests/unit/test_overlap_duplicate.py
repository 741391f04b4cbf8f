"""A second copy of a running attempt's message is neither skipped nor run."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any, cast

from common.messages import RunMessage
from common.zk import Coordinator
from workerd.overlap import admit


class HeldLock:
    """Stands in for the coordinator: the job's lock is held by `holder`."""

    def __init__(self, holder: dict[str, Any]) -> None:
        self._holder = holder

    def try_lock(self, name: str, data: dict[str, Any]) -> bool:
        return False

    def holder(self, name: str) -> dict[str, Any]:
        return self._holder


def run(run_id: int, attempt: int = 1) -> RunMessage:
    return RunMessage(run_id=run_id, job_id=7, scheduled_for=datetime(2026, 12, 1, tzinfo=UTC),
                      attempt=attempt, max_attempts=3, job_type="shell", payload={},
                      pool="default", priority=5, concurrency="forbid", timeout_s=None,
                      backoff={"base": 1, "factor": 2, "cap": 60, "jitter": 0}, epoch=1)


def decide(holder: dict[str, Any], message: RunMessage) -> Any:
    return admit(cast(Coordinator, HeldLock(holder)), message, "worker-2", threading.Event(),
                 lambda _c: None, 1.0)


def test_a_copy_of_the_attempt_that_holds_the_lock_is_a_duplicate_not_a_skip() -> None:
    admission = decide({"run_id": 52, "attempt": 1, "worker": "worker-2"}, run(52))
    assert admission.duplicate and not admission.admitted


def test_another_run_holding_the_lock_still_skips_a_forbid_fire() -> None:
    admission = decide({"run_id": 51, "attempt": 1, "worker": "worker-1"}, run(52))
    assert not admission.duplicate and not admission.admitted
    assert admission.reason == "overlap forbidden: run 51 on worker-1 is still running"
    assert decide({"run_id": 52, "attempt": 1, "worker": "w"}, run(52, attempt=2)).duplicate \
        is False
