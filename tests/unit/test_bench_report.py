import json

from bench import records, report, table

LATE = {"count": 300, "p50": 4.0, "p99": 9.0, "max": 12.0, "lower_bound": False}
RUN = {"jobs": 5000, "runs": 5000, "finished": 5000, "states": {"succeeded": 5000},
       "seconds": 5.0, "runs_per_s": 1000.0, "last_queued_s": 4.0, "first_start_s": 0.1,
       "complete": True, "creation_seconds": 3.0, "created_before_fire_s": 4.0,
       "ratio_to_raw": 0.1, "load": [2.0, 2.5]}
RAW = {"messages": 50000, "round_trip_per_s": 10000.0, "confirm_each_per_s": 1000.0,
       "publish_per_s": 11000.0, "method": "windowed", "body_bytes": 391, "load": [1.0, 1.1]}
RSS = {"peak_kib": {"sched-1": 50_000, "worker-1": 45_000}, "leader": "sched-1",
       "leader_kib": 50_000, "schedulerd_max_kib": 50_000, "workerd_max_kib": 45_000}
DOC = {
    "format": records.FORMAT, "code": {"commit": "abc", "product_changes": []},
    "started_at": "2026-11-23T00:00:00+00:00", "command": "python -m bench.run",
    "duration_s": 600.0, "loadavg_end": [1.0, 1.0, 1.0], "errors": [],
    "machine": {"nproc": 2, "cpu_model": "cpu", "memory_gib": 23.5, "python": "3.11",
                "kernel": "6", "loadavg": [1.0, 1.0, 1.0]},
    "config": {"mode": "default", "schedulers": 3, "workers": 2, "worker_slots": 4,
               "session_timeout_s": 6.0},
    "environments": {"main": {"rabbit_nodes": 1, "benchmarks": ["raw"], "seconds": 100.0}},
    "raw_broker": RAW,
    "throughput": {"python": RUN, "shell": {**RUN, "jobs": 1000}, "rss": RSS},
    "throughput3": {"raw_broker": RAW, "python": {**RUN, "runs_per_s": 3000.0,
                                                  "ratio_to_raw": 0.6}},
    "lateness": {"runs": [{**RUN, "rate_per_s": 10.0, "start_ms": LATE, "queued_ms": LATE,
                           "over_100ms": 0, "seconds": 30.0, "jobs": 300},
                          {**RUN, "rate_per_s": 1000.0, "seconds": 10.0, "jobs": 10000,
                           "start_ms": {**LATE, "p99": 80.0}, "queued_ms": LATE,
                           "over_100ms": 3}]},
    "schedules": {"jobs": 10000, "minutes": 2, "fires_per_s": 166.7, "expected": 20000,
                  "recorded": 20000, "recorded_in_time": 19990, "skipped": 0, "missing": 0,
                  "not_started": 10, "stored_seconds": 1.0, "stored_before_window_s": 9.0,
                  "waited_after_window_s": 60.0, "rss_peak_kib": {"sched-1": 60_000},
                  "start_ms": {**LATE, "p99": 2000.0, "lower_bound": True},
                  "queued_ms": LATE, "leader": "sched-1", "load": [3.0, 3.0]},
    "memory": {"idle": {"peak_kib": {"sched-1": 45_000, "worker-1": 44_000},
                        "kinds": {"sched-1": "schedulerd", "worker-1": "workerd"}},
               "jobs": {"jobs": 100000, "mix": {}, "stored_seconds": 4.0,
                        "sampled_seconds": 30.0, "runs_during": 5000, "started_during": 5000,
                        "jobs_table_mib": 60.0, "leader": "sched-1",
                        "peak_kib": {"sched-1": 250_000}, "leader_kib": 250_000,
                        "schedulerd_max_kib": 250_000, "workerd_max_kib": 45_000}},
    "failover": {"session_timeout_s": 6.0, "trickle": "10 jobs",
                 "sigkill": {"trials": [{"seconds": 7.2}], "median_s": 7.2, "worst_s": 7.2},
                 "sigterm": {"trials": [{"seconds": 0.4}], "median_s": 0.4, "worst_s": 0.4}},
    "outage": {"trickle": "10 jobs every 1 s, 100 ms apart",
               "rabbitmq": {"queue": "zeitplan.runs.default.normal", "median_s": 2.5,
                            "worst_s": 3.25, "best_s": 1.5, "load": [1.0, 2.0],
                            "trials": [{"node": "rabbit2", "connections": 5,
                                        "new_leader": "rabbit3@h", "kill_s": 0.03,
                                        "to_queued_s": 0.05, "seconds": 3.25,
                                        "restart_s": 14.0, "window_s": 10,
                                        "window_runs": 100, "not_succeeded": 1,
                                        "states": {"failed": 1, "succeeded": 99}}]},
               "postgres": {"old_leader": "sched-1", "new_leader": "sched-2", "old_epoch": 4,
                            "new_epoch": 5, "promoted_s": 0.8, "kill_s": 0.012,
                            "to_queued_s": 1.75, "seconds": 1.9, "window_s": 10,
                            "window_runs": 100, "not_succeeded": 0,
                            "states": {"succeeded": 100}, "load": [2.0, 2.5]}},
    "peer": {"zeitplan": RUN, "zeitplan_periodic": {"seconds": 30.0, "start_ms": LATE},
             "celery": {"version": "5.7.0", "workers": 2, "slots": 4, "tasks": 5000,
                        "tasks_per_s": 700.0, "seconds": 7.0, "publish_seconds": 6.0,
                        "periodic": {"start_ms": {**LATE, "p99": 28.0},
                                     "mean_period_s": 1.002}},
             "zeitplan_over_celery": 1.43},
}


def python_details(tmp_path, **fields):
    """The Details line of the 1-node python run of a record whose run has `fields` too."""
    doc = {**DOC, "throughput": {**DOC["throughput"], "python": {**RUN, **fields}}}
    (tmp_path / "20261123T000000Z.json").write_text(json.dumps(doc))
    return next(x for x in report.render_all(tmp_path).splitlines()
                if x.startswith("- `python`, 1 node"))


def _verdicts():
    return {row.figure: row.met for row in table.rows(DOC)}


def test_every_target_of_the_issue_gets_a_verdict():
    met = _verdicts()
    assert any(f.startswith("Start lateness at 10 runs/s") and v is True
               for f, v in met.items())
    assert any(f.startswith("Start lateness at 1,000 runs/s") and v is False
               for f, v in met.items())  # 80 ms against 50 ms
    assert met["Many schedules: start lateness p50 / p99 / max"] is False  # >= 2 s
    assert any(f.startswith("End to end, 5,000 no-op `python` runs, 3-node") and v is True
               for f, v in met.items())
    assert any(f.startswith("Peak RSS with 100,000 jobs") and v is False
               for f, v in met.items())  # 256 MB against 200 MB
    assert any(f.startswith("Failover after SIGKILL") and v is False for f, v in met.items())
    assert any(f.startswith("Failover after SIGTERM") and v is True for f, v in met.items())
    assert any(f.startswith("Zeitplan / Celery") and v is False for f, v in met.items())
    assert any(f.startswith("1-s periodic") and v is True for f, v in met.items())


def test_a_figure_without_a_target_in_the_issue_has_no_verdict():
    rows = {row.figure: row for row in table.rows(DOC)}
    shell = next(r for f, r in rows.items() if "`shell`" in f)
    assert (shell.target, shell.met) == ("", None)


def test_the_report_renders_every_section_between_the_markers(tmp_path):
    (tmp_path / "20261123T000000Z.json").write_text(json.dumps(DOC))
    text = report.render_all(tmp_path)
    assert text.startswith("## Default mode")
    for heading in ("| Figure | Value |", "### Side by side with Celery", "### Details",
                    "### What the figures mean"):
        assert heading in text
    path = tmp_path / "RESULTS.md"
    path.write_text(f"# title\n{report.START}\nSTALE SECTION\n{report.END}\n\n## Notes\nmine\n")
    report.update_markdown(text, path)
    updated = path.read_text()
    assert "STALE SECTION" not in updated and updated.endswith("## Notes\nmine\n")


def test_a_partial_run_adds_to_the_latest_figures_of_its_mode_instead_of_hiding_them():
    later = {**{k: v for k, v in DOC.items() if k not in records.RESULT_KEYS},
             "started_at": "2026-11-24T00:00:00+00:00", "command": "run --only memory",
             "memory": {"idle": None, "jobs": None}}
    merged = records.merge([("a.json", DOC), ("b.json", later)])
    assert merged is not None
    assert merged["memory"] == later["memory"] and merged["failover"] == DOC["failover"]
    assert [(s["file"], s["benchmarks"]) for s in merged["sources"]] == [
        ("a.json", [k for k in records.RESULT_KEYS if k in DOC and k != "memory"]),
        ("b.json", ["memory"])]
    assert records.merge([]) is None


def test_a_benchmark_that_failed_half_way_leaves_the_earlier_whole_figures_in_place():
    later = {**{k: v for k, v in DOC.items() if k not in records.RESULT_KEYS},
             "started_at": "2026-11-24T00:00:00+00:00", "command": "run",
             "errors": ["peer: RuntimeError: Celery did not become ready"],
             "peer": {"zeitplan": DOC["peer"]["zeitplan"]}, "memory": {"idle": None}}
    merged = records.merge([("a.json", DOC), ("b.json", later)])
    assert merged is not None
    assert merged["peer"] == DOC["peer"] and merged["memory"] == later["memory"]
    assert merged["errors"] == ["b.json: peer: RuntimeError: Celery did not become ready"]


def test_records_of_an_older_layout_are_not_merged(tmp_path):
    (tmp_path / "1.json").write_text(json.dumps({"started_at": "x", "config": {}}))
    (tmp_path / "2.json").write_text(json.dumps({**DOC, "config": {**DOC["config"],
                                                                   "mode": "full"}}))
    assert list(records.latest_by_mode(tmp_path)) == ["full"]


def test_the_outage_figures_follow_the_failover_rows_without_a_target():
    rows = table.rows(DOC)
    figures = [row.figure for row in rows]
    sigterm = next(i for i, f in enumerate(figures) if f.startswith("Failover after SIGTERM"))
    rabbit, pg = rows[sigterm + 1], rows[sigterm + 2]
    assert rabbit.figure == ("RabbitMQ node loss (SIGKILL of the run queue's leader, 3 nodes) "
                             "to the first successful dispatch")
    assert (rabbit.value, rabbit.load) == ("3.25 s", "1.0 → 2.0")
    assert pg.figure.startswith("PostgreSQL failover") and pg.value == "1.75 / 1.90 s"
    assert all((r.target, r.verdict, r.met) == ("", "", None) for r in (rabbit, pg))


def test_several_rabbitmq_trials_show_the_median_and_the_worst():
    outage = DOC["outage"]
    trials = {**outage["rabbitmq"], "trials": outage["rabbitmq"]["trials"] * 3}
    doc = {**DOC, "outage": {**outage, "rabbitmq": trials}}
    row = next(r for r in table.rows(doc) if r.figure.startswith("RabbitMQ node loss"))
    assert row.figure.endswith(", median / worst of 3") and row.value == "2.50 / 3.25 s"


def test_the_outage_details_say_what_happened_to_the_runs_due_after_the_kill(tmp_path):
    (tmp_path / "20261123T000000Z.json").write_text(json.dumps(DOC))
    text = report.render_all(tmp_path)
    rabbit = next(line for line in text.splitlines() if line.startswith("- RabbitMQ node loss"))
    assert "SIGKILL of rabbit2" in rabbit and "holding 5 of the daemons'" in rabbit
    assert "gone after 30 ms" in rabbit
    assert "started at +3.25 s" in rabbit and "new leader rabbit3@h" in rabbit
    assert "1 of the 100 runs due in the 10 s after the kill did not succeed " \
           "(failed 1, succeeded 99)" in rabbit
    pg = next(line for line in text.splitlines() if line.startswith("- PostgreSQL failover"))
    assert "gone after 12 ms" in pg and "write probe passed at +0.80 s" in pg
    assert "claimed at +1.75 s, the first such run started at +1.90 s (on the new primary)" in pg
    assert "sched-1 → sched-2, epoch 4 → 5" in pg and "0 of the 100 runs" in pg
    assert "*RabbitMQ node loss* and *PostgreSQL failover*" in text


def test_the_profiles_on_one_and_on_three_rabbitmq_nodes_are_told_apart(tmp_path):
    views = {"cpu": {"samples": 200, "ours": [["schedulerd/leader.py:1 (Term.run)", 0.5]],
                     "leaves": [["json/encoder.py:2 (iterencode)", 0.25]]},
             "wall": {"ours_by_thread": {"MainThread": [["common/db/x.py:3 (claim)", 0.75]]}}}
    spied = {"leader": "sched-2", "worker": "worker-1", "rate": 100, "runs_per_s": 900.0,
             "jobs": 10000, "load": [1.0, 1.0], "raw_files": "/tmp/p",
             "processes": {"leader": views}}
    doc = {**DOC, "profile": spied, "profile3": {**spied, "rabbit_nodes": 3,
                                                 "runs_per_s": 700.0}}
    (tmp_path / "20261123T000000Z.json").write_text(json.dumps(doc))
    text = report.render_all(tmp_path)
    assert text.count("### Where the time goes (py-spy)") == 1
    assert "10,000 no-op python runs on one RabbitMQ node (900 runs/s" in text
    assert "10,000 no-op python runs on the 3-node RabbitMQ cluster (700 runs/s" in text
    assert text.count("- leader, on CPU (200 samples = 2.0 CPU-s), ours: "
                      "`schedulerd/leader.py:1 (Term.run)` 50%") == 2
    assert "- leader, thread `MainThread`, wall clock: `common/db/x.py:3 (claim)` 75%" in text
