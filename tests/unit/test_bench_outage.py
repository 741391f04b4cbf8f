from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench import failover, outage
from common.devcluster import LocalCluster, ManagedProcess
from common.devcluster.rabbitmq import RabbitNode

KILL = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def test_the_trickle_runs_through_the_normal_run_queue():
    assert outage.RUN_QUEUE == "zeitplan.runs.default.normal"


def test_the_figure_is_the_first_start_after_the_kill_and_the_first_claim_is_kept_too():
    found = failover.Dispatch(KILL + timedelta(milliseconds=40), 7,
                              KILL + timedelta(seconds=2, milliseconds=500))
    gone = KILL + timedelta(milliseconds=20)
    assert outage.timings(KILL, gone, found) == {"kill_s": 0.02, "to_queued_s": 0.04,
                                                 "seconds": 2.5}
    with pytest.raises(ValueError):
        outage.timings(KILL, gone, found._replace(started_at=None))


def test_runs_of_the_window_that_never_succeeded_or_were_never_recorded_are_counted():
    done = outage.outcome({"succeeded": 100}, expected=100, seconds=10)
    assert (done["not_succeeded"], done["window_runs"], done["window_s"]) == (0, 100, 10)
    lost = outage.outcome({"succeeded": 95, "failed": 2, "queued": 1}, expected=100, seconds=10)
    assert lost["not_succeeded"] == 5  # 2 failed, 1 pending, 2 fire times never recorded
    assert list(lost["states"]) == ["failed", "queued", "succeeded"]


def test_trials_are_summarised_by_median_worst_and_best():
    assert failover.summary([3.0, 1.0, 2.0]) == {"median_s": 2.0, "worst_s": 3.0,
                                                 "best_s": 1.0}


def test_poll_retries_until_the_probe_answers_and_gives_up_after_the_timeout():
    answers = iter([None, None, "here"])
    assert failover.poll(lambda: next(answers), timeout=5.0, every=0.0, what="x") == "here"
    with pytest.raises(RuntimeError, match="no thing within 0 s"):
        failover.poll(lambda: None, timeout=0.0, every=0.0, what="thing")


def _rabbit(tmp_path: Path, n: int, listing: str | None, running: bool = True) -> RabbitNode:
    name = f"rabbit{n}"
    proc = ManagedProcess(name, ["true"], env=None, cwd=None, log_path=tmp_path / f"{name}.log")
    node = RabbitNode(name, {"amqp": 1}, proc, nodename=f"{name}@h", env={})
    node.ctl = lambda *args, timeout=30.0: listing  # type: ignore[method-assign]
    node.is_running = lambda: running  # type: ignore[method-assign]
    return node


def test_the_queue_leader_is_the_node_a_live_node_names(tmp_path):
    cluster = LocalCluster(tmp_path)
    listing = "zeitplan.runs.default.normal\trabbit2@h\nzeitplan.status\trabbit1@h\n"
    nodes = [_rabbit(tmp_path, 1, "stale\trabbit1@h\n", running=False),
             _rabbit(tmp_path, 2, None), _rabbit(tmp_path, 3, listing)]
    cluster.nodes = {node.name: node for node in nodes}
    assert cluster.queue_leaders() == {"zeitplan.runs.default.normal": "rabbit2@h",
                                       "zeitplan.status": "rabbit1@h"}
    assert cluster.queue_leader("zeitplan.runs.default.normal") is nodes[1]
    assert cluster.queue_leader("zeitplan.runs.default.low") is None


def test_connections_are_counted_by_the_node_in_their_pid(tmp_path):
    node = _rabbit(tmp_path, 2, "<rabbit2@h.1700.1.0>\n<rabbit1@h.1700.2.0>\n"
                                "<rabbit2@h.1700.3.0>\n")
    assert outage.connections(node) == 2
    assert outage.connections(_rabbit(tmp_path, 2, None)) is None
