"""Outages: from a SIGKILL to a RabbitMQ node or to the PostgreSQL primary until the first
successful dispatch.

The trickle of bench/failover.py keeps a run due every 100 ms (ten `every 1 second` no-op
python jobs of priority 5, so every run goes through the quorum queue
`zeitplan.runs.default.normal`). A successful dispatch is a run the leader claimed
(`queued_at`, the database server's clock) after the killed process group was gone and a
worker then started (`started_at`, the worker's clock: the same machine). The figure is the
earliest such `started_at` minus the time the SIGKILL was sent. Runs claimed before the node
was gone do not count, even if delivered later: between sending the signal and the group's
end (`kill_s`, recorded) the old primary can still commit a claim. The time to the earliest
claim counted is recorded too.

RabbitMQ node loss (3-node cluster, `trials` times): ask `rabbitmqctl list_queues` which
node leads the run queue, count the AMQP connections it holds (each daemon connection tries
the nodes in a random order, so some of them usually die with it), SIGKILL it and poll the
runs table. Then note the queue's new leader, start the node again and wait until it is ready.

PostgreSQL failover (once, and last: the old primary cannot rejoin as a standby): SIGKILL
the primary and at once promote the synchronous standby (`pg_ctl promote`, as
tests/faults/test_postgres.py does). Nothing models a failover manager's detection, so the
figure is the promotion plus the daemons' own recovery: they find the new primary through
the multi-host DSN (`target_session_attrs=read-write`); a claim after the old primary's
processes were gone can only have been committed there. The promotion's duration and the
leader and epoch before and after are recorded.

After each kill the trickle runs due in the next WINDOW_S seconds (TRICKLE_JOBS per second)
are waited for until all have succeeded or WINDOW_WAIT_S after the window: those that have
not succeeded by then (failed, skipped, still pending or never recorded) are counted.
Between RabbitMQ trials the trickle is waited for until it is dispatched steadily again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from bench import failover, jobs
from bench.failover import TRICKLE_JOBS, Dispatch
from common.broker import level_of, run_queue
from common.db import Database
from common.devcluster import LocalCluster, ServiceNode
from common.devcluster.rabbitmq import RabbitNode
from common.devstack import Stack
from common.jobs import JobSpec

RUN_QUEUE = run_queue("default", level_of(JobSpec.priority))  # the trickle's queue
WINDOW_S = 10                   # runs due this long after a kill must all succeed...
WINDOW_WAIT_S = 60.0            # ...within this long after the window closes
DISPATCH_TIMEOUT_S = 120.0      # from the kill to the first successful dispatch
READY_TIMEOUT_S = 120.0         # a restarted RabbitMQ node


def rabbit_loss(db: Database, cluster: LocalCluster, ids: list[int], *, trials: int,
                progress: Callable[[str], None]) -> dict[str, Any]:
    """`trials` kills of the run queue's leader; each trial and their summary."""
    rows = []
    for n in range(trials):
        row = rabbit_trial(db, cluster, ids)
        rows.append(row)
        progress(f"  RabbitMQ {n + 1}/{trials}: killed {row['node']} ({row['connections']} "
                 f"connections), {RUN_QUEUE} moved to {row['new_leader']}; first successful "
                 f"dispatch after {row['seconds']:.3f} s; {row['not_succeeded']} of "
                 f"{row['window_runs']} runs due in the next {WINDOW_S} s did not succeed")
    return {"queue": RUN_QUEUE, "trials": rows, **failover.summary([r["seconds"] for r in rows]),
            "window_runs": sum(r["window_runs"] for r in rows),
            "not_succeeded": sum(r["not_succeeded"] for r in rows)}


def rabbit_trial(db: Database, cluster: LocalCluster, ids: list[int]) -> dict[str, Any]:
    """Kill the node leading the run queue once; restart it and wait for the trickle."""
    victim = failover.poll(lambda: cluster.queue_leader(RUN_QUEUE), timeout=60.0, every=1.0,
                           what=f"leader of {RUN_QUEUE}")
    held = connections(victim)
    sent, gone = kill(victim)
    found = wait_started(db, ids, gone)
    new_leader = cluster.queue_leaders().get(RUN_QUEUE)
    began = time.monotonic()
    victim.start()
    victim.wait_ready(READY_TIMEOUT_S)
    restart_s = time.monotonic() - began
    window = wait_window(db, ids, sent)
    time.sleep(failover.SETTLE_S)
    failover.wait_steady(db, ids, timeout=30.0)
    return {"node": victim.name, "connections": held, "new_leader": new_leader,
            **timings(sent, gone, found), "restart_s": round(restart_s, 1), **window}


def postgres_failover(db: Database, cluster: LocalCluster, stack: Stack, ids: list[int], *,
                      progress: Callable[[str], None]) -> dict[str, Any]:
    """Kill the primary and promote the standby (once: the old primary stays down)."""
    leader = stack.wait_leader(30.0)
    epoch = failover.current_epoch(db)
    sent, gone = kill(cluster.node("pg-primary"))
    cluster.promote_standby()
    promoted = jobs.utcnow()
    found = wait_started(db, ids, gone)
    new_leader = stack.wait_leader(30.0)
    row = {"old_leader": leader.name, "new_leader": new_leader.name, "old_epoch": epoch,
           "new_epoch": found.epoch, "promoted_s": round((promoted - sent).total_seconds(), 3),
           **timings(sent, gone, found), **wait_window(db, ids, sent)}
    progress(f"  PostgreSQL: standby promoted after {row['promoted_s']:.2f} s; first claim "
             f"after {row['to_queued_s']:.3f} s, first successful dispatch after "
             f"{row['seconds']:.3f} s ({leader.name} -> {new_leader.name}, epoch {epoch} -> "
             f"{found.epoch}); {row['not_succeeded']} of {row['window_runs']} runs due in the "
             f"next {WINDOW_S} s did not succeed")
    return row


def kill(node: ServiceNode) -> tuple[datetime, datetime]:
    """SIGKILL `node`'s process group: when the signal was sent, and when the group was gone."""
    sent = jobs.utcnow()
    node.kill()
    return sent, jobs.utcnow()


def connections(node: RabbitNode) -> int | None:
    """AMQP connections held by `node` (None when it does not answer)."""
    output = node.ctl("list_connections", "pid", "--quiet", "--no-table-headers")
    if output is None:
        return None
    return sum(f"<{node.nodename}." in line for line in output.splitlines())


def wait_started(db: Database, ids: list[int], after: datetime) -> Dispatch:
    """The first dispatch of the trickle claimed after `after`, once one of its runs started."""
    def started() -> Dispatch | None:
        found = failover.first_dispatch(db, ids, after=after)
        return found if found is not None and found.started_at is not None else None
    return failover.poll(started, timeout=DISPATCH_TIMEOUT_S,
                         what="run claimed after the kill and started")


def timings(sent: datetime, gone: datetime, found: Dispatch) -> dict[str, float]:
    """Seconds from the SIGKILL (`sent`) until the process group was `gone`, to the first
    claim counted and to the first start among those claims (3 decimals)."""
    if found.started_at is None:
        raise ValueError("the dispatch has not started")
    return {"kill_s": round((gone - sent).total_seconds(), 3),
            "to_queued_s": round((found.queued_at - sent).total_seconds(), 3),
            "seconds": round((found.started_at - sent).total_seconds(), 3)}


def wait_window(db: Database, ids: list[int], sent: datetime) -> dict[str, Any]:
    """Wait until the runs due in the WINDOW_S s after `sent` have all succeeded, at most
    WINDOW_WAIT_S after that window; what became of them."""
    end = sent + timedelta(seconds=WINDOW_S)
    expected = TRICKLE_JOBS * WINDOW_S  # a half-open window holds this many fire times
    deadline = time.monotonic() + (end - jobs.utcnow()).total_seconds() + WINDOW_WAIT_S

    def settled() -> dict[str, int] | None:
        states = window_states(db, ids, sent, end)
        done = states.get("succeeded", 0) >= expected or time.monotonic() > deadline
        return states if done else None
    states = failover.poll(settled, timeout=WINDOW_S + WINDOW_WAIT_S + 30.0, every=0.5,
                           what=f"state of the runs due in the {WINDOW_S} s after the kill")
    return outcome(states, expected=expected, seconds=WINDOW_S)


def window_states(db: Database, ids: list[int], start: datetime,
                  end: datetime) -> dict[str, int]:
    """State -> count of the runs of `ids` with a fire time in [start, end)."""
    with db.transaction() as conn:
        rows = conn.execute(
            "SELECT state, count(*) AS n FROM runs WHERE job_id = ANY(%s) "
            "AND scheduled_for >= %s AND scheduled_for < %s GROUP BY state",
            (ids, start, end)).fetchall()
    return {str(row["state"]): int(row["n"]) for row in rows}


def outcome(states: dict[str, int], *, expected: int, seconds: int) -> dict[str, Any]:
    """The `seconds` window's `expected` runs: their states, and how many did not succeed
    (fire times never recorded included)."""
    return {"window_s": seconds, "window_runs": expected, "states": dict(sorted(states.items())),
            "not_succeeded": max(0, expected - states.get("succeeded", 0))}
