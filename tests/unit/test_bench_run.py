from bench.run import BENCHMARKS, selection


def test_every_benchmark_runs_by_default_each_in_its_environment():
    plan = {env.name: env.benchmarks for env in selection(None)}
    assert plan["main"][0] == "raw"
    assert plan["rabbit3"] == ("throughput3", "profile3")
    assert sorted(name for names in plan.values() for name in names) == sorted(BENCHMARKS)


def test_a_benchmark_that_is_a_ratio_to_the_raw_round_trip_brings_it_along():
    plan = selection(["peer"])
    assert [(e.name, e.benchmarks) for e in plan] == [("main", ("raw", "peer"))]


def test_only_the_environments_of_the_selected_benchmarks_are_started():
    assert [e.name for e in selection(["memory", "schedules"])] == ["schedules", "memory"]


def test_the_outages_run_last_on_three_rabbitmq_nodes():
    last = selection(None)[-1]
    assert (last.name, last.rabbit_nodes, last.benchmarks) == ("outage", 3, ("outage",))
    assert [e.name for e in selection(["outage"])] == ["outage"]
