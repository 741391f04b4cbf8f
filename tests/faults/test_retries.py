"""A worker's RabbitMQ connection cut while failing attempts run: their retries must still
be sent (or the runs buried), not left `failed` for good."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from tests.faults.checker import Faults
from tests.faults.harness import FaultEnv, assert_clean, busiest_worker
from tests.faults.workload import phase

pytestmark = pytest.mark.timeout(300)


def test_failing_attempts_whose_worker_lost_rabbitmq_are_still_retried_or_buried(
        fault_env: Callable[..., FaultEnv]) -> None:
    # The cut worker's attempts fail while it is cut off: their deliveries go back to the
    # queue (the other worker reports them while the database still says running), the
    # worker drops the retry publishes bound to the lost connection and, once healed,
    # reports the failures. Nobody else would send those retries.
    env = fault_env(proxied=("workerd",), workers=2, worker_slots=2,
                    extra={"schedulerd": {"leader": {"stale_after": 10.0}}})
    with env.workload(steady=False) as load:
        due = datetime.now(UTC) + timedelta(seconds=3)
        load.burst(4, due, 0.0, role="at-flaky-slow")  # fail once, then succeed
        load.burst(4, due, 0.0, role="at-doomed-slow")  # fail every attempt
        victim = busiest_worker(env)
        cut_at = time.time()
        env.cut(victim.name, "rabbitmq", "drop")
        load.run_for(6.0)  # the attempts (3 s) end meanwhile
        env.mend(victim.name)
        load.run_for(phase(4))
    report = env.verdict("worker cut from RabbitMQ under failing attempts", load,
                         Faults(lost_workers={victim.name: cut_at}, recovery_from=cut_at),
                         settle_timeout=60, extra=f"{victim.name} cut for 6 s")
    assert_clean(report, min_runs=8)
    unsent = sum(d.proc.log_path.read_text().count('"retry_unsent"')
                 for d in env.stack.schedulers)
    assert unsent > 0, "no failed run was left without its retry: the fault did not happen"
