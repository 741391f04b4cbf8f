import pytest

from bench.peer import parse, periodic, throughput


def test_task_records_are_parsed_and_other_lines_ignored():
    records = parse(["noop 3 10.5 10.6", "tick 20.0 20.001 20.004", "worker: Warm shutdown",
                     "noop x"])
    assert records.noops == [(3, 10.5, 10.6)]
    assert records.ticks == [(20.0, 20.001, 20.004)]


def test_throughput_runs_from_the_first_publish_to_the_last_finish_counting_tasks_once():
    noops = [(0, 100.1, 100.2), (1, 100.3, 100.5), (1, 101.0, 101.1), (2, 100.4, 102.0)]
    result = throughput(noops, 100.0, 3)
    assert result["finished"] == 3 and result["duplicates"] == 1
    assert result["seconds"] == pytest.approx(2.0)
    assert result["tasks_per_s"] == pytest.approx(1.5)


def test_throughput_of_nothing_is_zero():
    assert throughput([], 1.0, 10)["tasks_per_s"] == 0.0


def test_periodic_lateness_leaves_out_the_first_fire_and_reports_the_drift():
    ticks = [(1.0, 1.001, 1.5), (2.0, 2.001, 2.002), (3.002, 3.003, 3.012), (4.004, 4.005, 4.006)]
    result = periodic(ticks)
    assert result is not None and result["fires"] == 3
    assert result["start_ms"]["max"] == pytest.approx(10.0)
    assert result["mean_period_s"] == pytest.approx(1.002)
    assert periodic(ticks[:1]) is None


def test_the_drain_rate_counts_only_the_tasks_of_its_batch_from_first_start_to_last_finish():
    from bench.peer import drain
    noops = [(0, 1.0, 1.1), (10, 50.0, 50.5), (11, 50.2, 52.0), (12, 51.0, 51.5)]
    result = drain(noops, 10, 3)
    assert result["finished"] == 3 and result["seconds"] == pytest.approx(2.0)
    assert result["tasks_per_s"] == pytest.approx(1.5)
    assert drain(noops, 20, 5)["tasks_per_s"] == 0.0
