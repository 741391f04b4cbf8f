import json

from bench import cpu, report
from bench.cpu import Sample
from tests.unit.test_bench_report import DOC, RAW, python_details

# /proc/<pid>/stat of a process whose name has a space and a parenthesis in it.
STAT = ("4570 (my (odd) name) S 1 4570 4570 0 -1 4194560 2000 0 0 0 "
        "150 50 7 3 20 0 12 0 9000 1000000 5000 18446744073709551615")


def test_a_stat_line_gives_the_command_and_its_cpu_ticks_with_reaped_children():
    assert cpu.parse_stat(STAT) == ("my (odd) name", 150 + 50 + 7 + 3, 9000)


def test_processes_are_grouped_by_daemon_pid_then_by_service_command():
    group = cpu.classifier({10: "leader", 11: "workers"})
    assert group(10, Sample("python", "", 0)) == "leader"
    assert group(11, Sample("python", "", 0)) == "workers"
    assert group(12, Sample("beam.smp", "", 0)) == "rabbitmq"
    assert group(13, Sample("postgres", "postgres: walsender", 0)) == "postgresql"
    assert group(14, Sample("java", "-cp zookeeper-3.8.jar", 0)) == "zookeeper"
    assert group(15, Sample("java", "-jar other.jar", 0)) == cpu.OTHER


def test_cpu_is_what_each_process_used_between_the_snapshots():
    ticks = cpu.TICKS
    before = {1: Sample("beam.smp", "", 5 * ticks), 2: Sample("beam.smp", "", ticks),
              3: Sample("postgres", "", 0), 9: Sample("postgres", "", 4 * ticks, started=100),
              5: Sample("kworker/0:1-mm", "", 3 * ticks)}
    after = {1: Sample("beam.smp", "", 7 * ticks), 2: Sample("beam.smp", "", 2 * ticks),
             3: Sample("postgres", "", ticks),
             4: Sample("postgres", "", ticks // 2),  # started in the window: counts whole
             9: Sample("python", "", ticks, started=200),  # the pid was reused: from zero
             5: Sample("kworker/0:1-events", "", 3 * ticks)}  # renamed, idle: nothing
    used = cpu.account(before, after, cpu.classifier({9: "workers"}))
    assert list(used) == ["rabbitmq", "postgresql", "workers"]
    assert used == {"rabbitmq": 3.0, "postgresql": 1.5, "workers": 1.0}


def test_the_summary_says_how_busy_the_cpus_were_and_the_cost_per_run():
    figures = cpu.summary({"rabbitmq": 6.0, "leader": 2.0}, seconds=5.0, runs=4000, cpus=2)
    assert figures["busy"] == 0.8
    assert figures["ms_per_run"] == {"rabbitmq": 1.5, "leader": 0.5}
    assert cpu.describe(figures) == ("5.0 s on 2 CPUs, 80% busy: rabbitmq 6.0 CPU-s "
                                     "(1.50 ms/run), leader 2.0 CPU-s (0.50 ms/run)")


def test_the_details_of_a_throughput_run_carry_its_cpu_by_component(tmp_path):
    figures = cpu.summary({"rabbitmq": 6.0}, seconds=5.0, runs=5000, cpus=2)
    assert python_details(tmp_path, cpu=figures).endswith(
        "CPU from a second before the fire time to the end: 5.0 s on 2 CPUs, "
        "60% busy: rabbitmq 6.0 CPU-s (1.20 ms/run).")


def test_the_raw_round_trip_carries_its_cpu_per_message(tmp_path):
    figures = cpu.summary({"rabbitmq": 4.0}, seconds=5.0, runs=50000, cpus=2)
    doc = {**DOC, "raw_broker": {**RAW, "cpu": figures}}
    (tmp_path / "20261123T000000Z.json").write_text(json.dumps(doc))
    line = next(x for x in report.render_all(tmp_path).splitlines()
                if x.startswith("- Raw broker, 1 node"))
    assert line.endswith("CPU over the round trip (per message): 5.0 s on 2 CPUs, 40% busy: "
                         "rabbitmq 4.0 CPU-s (0.08 ms/msg).")
