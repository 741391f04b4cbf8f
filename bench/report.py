"""The record of a run: bench/results/<UTC timestamp>.json, and the generated part of
bench/RESULTS.md (between the markers; whatever is outside them is hand-written and kept)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import broker_ops, cpu, records, table
from bench.targets import number

START = "<!-- results:start -->"
END = "<!-- results:end -->"
HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
RESULTS_MD = HERE / "RESULTS.md"
FORMAT = records.FORMAT

_HEADER = """# Zeitplan benchmarks

`make bench` (or `.venv/bin/python -m bench.run [--quick|--full] [--only NAME ...]`) rewrites
the part of this file between the `results` markers; edit only outside them.

"""
_NOTES = """
## Notes

(Hand-written analysis goes here; `bench.run` never touches this section.)
"""


def write_json(doc: dict[str, Any], started: datetime, directory: Path = RESULTS_DIR) -> Path:
    """Write the whole record as bench/results/<UTC timestamp>.json."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def update_markdown(generated: str, path: Path = RESULTS_MD) -> None:
    """Replace the generated section of RESULTS.md, keeping everything around it."""
    block = f"{START}\n{generated.strip()}\n{END}"
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if START in text and END in text:
            before, rest = text.split(START, 1)
            after = rest.split(END, 1)[1]
            path.write_text(before + block + after, encoding="utf-8")
            return
        path.write_text(_HEADER + block + "\n\n" + text, encoding="utf-8")
        return
    path.write_text(_HEADER + block + "\n" + _NOTES, encoding="utf-8")


TITLES = {"default": "Default mode (`make bench`)",
          "full": "Full mode: the issue's sizes (`make bench-full`)",
          "quick": "Quick mode (a smoke run)"}


def render_all(directory: Path = RESULTS_DIR) -> str:
    """The generated section: the latest figures of each mode, merged from its records."""
    parts = [render(doc) for doc in records.latest_by_mode(directory).values()]
    return "\n\n".join(parts) if parts else "(no recorded run yet)"


def render(doc: dict[str, Any]) -> str:
    """One mode's section: when, where, how, the figures against their targets, the
    details and what the figures mean."""
    m = doc["machine"]
    cfg = doc["config"]
    envs = doc.get("environments", {})
    lines = [f"## {TITLES.get(cfg['mode'], cfg['mode'])}", ""]
    for source in doc.get("sources", []):
        code = source.get("code") or {}
        dirty = (f", product code changed from it: {', '.join(code['product_changes'])}"
                 if code.get("product_changes") else "")
        lines.append(f"- Run {source['started_at']}: `{source['command']}` "
                     f"(record `bench/results/{source['file']}`, code {code.get('commit', '?')}"
                     f"{dirty}): {', '.join(source['benchmarks'])}")
    lines += [
        f"- Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB memory, "
        f"Python {m['python']}, Linux {m['kernel']}; other engineers' tests share it, so "
        "every figure carries the 1-minute load average at its start and end",
        f"- Each environment is a fresh local cluster: 3 ZooKeeper nodes (session timeout "
        f"{cfg.get('session_timeout_s', 6.0):g} s), PostgreSQL primary + synchronous standby, "
        f"RabbitMQ; {cfg['schedulers']} schedulerd and {cfg['workers']} workerd with "
        f"{cfg['worker_slots']} slots each; everything on this one machine. "
        + "; ".join(f"{name}: {e['rabbit_nodes']} RabbitMQ node"
                    f"{'s' if e['rabbit_nodes'] > 1 else ''}, {', '.join(e['benchmarks'])} "
                    f"({e.get('seconds', 0):.0f} s)" for name, e in envs.items()),
    ]
    if doc.get("errors"):
        lines.append(f"- **Errors:** {'; '.join(doc['errors'])}")
    lines += ["", "| Figure | Value | vs raw broker | Target (issue) | Verdict | Load, 1-min |",
              "|---|---|---|---|---|---|"]
    for row in table.rows(doc):
        lines.append(f"| {row.figure} | {row.value} | {row.vs_raw} | {row.target} | "
                     f"{row.verdict} | {row.load} |")
    if cfg["mode"] != "full":
        lines += ["", f"Sizes are the {cfg['mode']} mode's, smaller than the issue's where "
                      "the row says so; the targets are the issue's, judged as they stand."]
    lines += ["", *_peer(doc), *_details(doc), "", *_profiles(doc), "", *_meaning()]
    return "\n".join(lines)


def _peer(doc: dict[str, Any]) -> list[str]:
    r = doc.get("peer") or {}
    c, z = r.get("celery"), r.get("zeitplan")
    if not c or not z:
        return []
    zp = (r.get("zeitplan_periodic") or {}).get("start_ms") or {}
    cp = (c.get("periodic") or {}).get("start_ms") or {}
    def late(s: dict[str, Any]) -> str:
        return f"{s['p50']:.1f} / {s['p99']:.1f} / {s['max']:.1f} ms" if s else "n/a"
    ratio = r.get("zeitplan_over_celery")
    return [
        "### Side by side with Celery", "",
        "| | Zeitplan | Celery | Zeitplan / Celery |", "|---|---|---|---|",
        f"| End to end, {z['jobs']:,} no-op runs / tasks | {z['runs_per_s']:,.0f}/s | "
        f"{c['tasks_per_s']:,.0f}/s | {number(ratio or 0, 'x')} |",
        f"| 1-s periodic start lateness, p50 / p99 / max | {late(zp)} | {late(cp)} | |",
        *([f"| Celery's workers alone, queue filled before they start | | "
           f"{c['drain']['tasks_per_s']:,.0f}/s | |"] if c.get("drain") else []),
        "",
        f"Celery {c['version']}: {c['workers']} worker processes, `--pool threads "
        f"--concurrency {c['slots']}`, prefetch multiplier 4, quorum queue, persistent "
        "messages, publisher confirms, `acks_late`, no result backend; tasks published by one "
        "process (kombu waits for each confirm) and the first node of the same cluster as "
        f"broker; Zeitplan's daemons stopped meanwhile. Publishing took "
        f"{c['publish_seconds']:.2f} s of the {c['seconds']:.2f} s. What differs: every "
        "Zeitplan run is also a row in PostgreSQL (materialised, claimed, reported started "
        "and finished through the status queue, with a synchronous standby), which Celery "
        "does not keep at all; Celery beat counts each period from its last send "
        f"(mean period {(c.get('periodic') or {}).get('mean_period_s')} s), Zeitplan from a "
        "fixed anchor. Celery's lateness is measured against the due time beat itself "
        "computed, Zeitplan's against the fire time in its schedule.", ""]


def _details(doc: dict[str, Any]) -> list[str]:
    out = ["### Details", ""]
    for label, part in (("1 node", doc), ("3 nodes", doc.get("throughput3") or {})):
        raw = part.get("raw_broker")
        if raw:
            out.append(f"- Raw broker, {label}: {raw['method']}; {raw['body_bytes']}-byte "
                       f"bodies; the publisher alone reached {raw['publish_per_s']:,.0f}/s."
                       + (" CPU over the round trip (per message): "
                          f"{cpu.describe(raw['cpu'], per='msg')}."
                          if raw.get("cpu") else ""))
        tp = doc.get("throughput") if part is doc else part
        for job_type in ("python", "shell"):
            r = (tp or {}).get(job_type)
            if r:
                out.append(
                    f"- `{job_type}`, {label}: {r['finished']:,} of {r['jobs']:,} runs finished "
                    f"({', '.join(f'{k} {v:,}' for k, v in sorted(r['states'].items()))}) in "
                    f"{r['seconds']:.2f} s from the fire time; the leader had claimed the last "
                    f"run for dispatch at +{r['last_queued_s']:.2f} s and the first started at "
                    f"+{r['first_start_s']:.2f} s. Jobs created in {r['creation_seconds']:.1f} s "
                    f"(not measured), {r['created_before_fire_s']:.1f} s before the fire time."
                    + (f" CPU from a second before the fire time to the end: "
                       f"{cpu.describe(r['cpu'])}." if r.get("cpu") else "")
                    + (f" RabbitMQ's counters: {broker_ops.describe(r['broker_ops'])}."
                       if r.get("broker_ops") else ""))
    for r in (doc.get("lateness") or {}).get("runs", []):
        q = r.get("queued_ms")
        if q:
            out.append(f"- Lateness at {r['rate_per_s']:,.0f}/s: {r['jobs']:,} `at` jobs due "
                       f"evenly over {r['seconds']:g} s; dispatch lateness (queued_at - "
                       f"scheduled_for) p50 {q['p50']:,.0f} ms, p99 {q['p99']:,.0f} ms, max "
                       f"{q['max']:,.0f} ms; {r['over_100ms']:,} runs started over 100 ms late.")
    s = doc.get("schedules")
    if s:
        out.append(f"- Many schedules: jobs stored with COPY in {s['stored_seconds']:.1f} s, "
                   f"{s['stored_before_window_s']:.1f} s before the window; {s['skipped']:,} "
                   f"fires skipped (misfire), {s['missing']:,} never recorded, "
                   f"{s['not_started']:,} not started {s['waited_after_window_s']:.0f} s after "
                   f"the window closed (counted as late as that: a lower bound when any). "
                   f"Peak RSS: " + ", ".join(f"{n} {_mib(k)}"
                                             for n, k in sorted(s["rss_peak_kib"].items()))
                   + f" (leader {s.get('leader', '?')}).")
    mem = (doc.get("memory") or {}).get("jobs")
    if mem:
        out.append(f"- Memory: {mem['jobs']:,} jobs stored with COPY in "
                   f"{mem['stored_seconds']:.1f} s (jobs table {mem['jobs_table_mib']:,.0f} "
                   f"MiB); sampled {mem['sampled_seconds']:g} s from the first fire, during "
                   f"which {mem['runs_during']:,} runs were recorded and {mem['started_during']:,}"
                   f" started. Peak per daemon: " + ", ".join(
                       f"{n} {_mib(k)}" for n, k in sorted(mem["peak_kib"].items()))
                   + f" (leader {mem['leader']}).")
    rss = (doc.get("throughput") or {}).get("rss")
    if rss:
        per = ", ".join(f"{name} {_mib(kib)}" for name, kib in sorted(rss["peak_kib"].items()))
        out.append(f"- Peak RSS per daemon during the 1-node throughput runs (VmRSS sampled "
                   f"every 0.25 s, or VmHWM when larger): {per}.")
    f = doc.get("failover")
    if f:
        for key in ("sigkill", "sigterm"):
            trials = (f.get(key) or {}).get("trials", [])
            if trials:
                out.append(f"- Failover after {key.upper()}: " + ", ".join(
                    f"{t['seconds']:.2f} s" for t in trials) + f" ({f['trickle']}).")
    return out + _outage(doc.get("outage") or {})


def _outage(r: dict[str, Any]) -> list[str]:
    """One line per RabbitMQ trial and one for the PostgreSQL failover."""
    lines: list[tuple[list[str], dict[str, Any]]] = []
    for t in (r.get("rabbitmq") or {}).get("trials", []):
        held = "?" if t["connections"] is None else t["connections"]
        lines.append(([f"RabbitMQ node loss: SIGKILL of {t['node']}, the leader of "
                       f"`{r['rabbitmq']['queue']}`, holding {held} of the daemons' AMQP "
                       "connections", _after_kill(t), f"the queue's new leader {t['new_leader']}",
                       f"node restarted and ready in {t['restart_s']:.0f} s"], t))
    pg = r.get("postgres")
    if pg:
        lines.append((["PostgreSQL failover: SIGKILL of the primary, standby promoted (`pg_ctl "
                       f"promote -w`, then a write probe passed at +{pg['promoted_s']:.2f} s)",
                       f"{_after_kill(pg)} (on the new primary)",
                       f"leader {pg['old_leader']} → {pg['new_leader']}, epoch "
                       f"{pg['old_epoch']} → {pg['new_epoch']}"], pg))
    return [f"- {'; '.join([*clauses, _window(t), 'trickle: ' + r['trickle']])}."
            for clauses, t in lines]


def _after_kill(t: dict[str, Any]) -> str:
    return (f"its processes gone after {t['kill_s'] * 1000:.0f} ms; the first run claimed after "
            f"that was claimed at +{t['to_queued_s']:.2f} s, the first such run started at "
            f"+{t['seconds']:.2f} s")


def _window(t: dict[str, Any]) -> str:
    states = ", ".join(f"{k} {v:,}" for k, v in t["states"].items())
    return (f"{t['not_succeeded']} of the {t['window_runs']} runs due in the {t['window_s']} s "
            f"after the kill did not succeed ({states or 'none recorded'})")


def _profiles(doc: dict[str, Any]) -> list[str]:
    one, three = _profile(doc.get("profile")), _profile(doc.get("profile3"))
    if not one and not three:
        return []
    return ["### Where the time goes (py-spy)", "", *one, *([""] if one and three else []),
            *three]


def _profile(p: dict[str, Any] | None) -> list[str]:
    if not p:
        return []
    nodes = p.get("rabbit_nodes", 1)  # records before profile3 were all on one node
    cluster = "one RabbitMQ node" if nodes == 1 else f"the {nodes}-node RabbitMQ cluster"
    out = [f"A separate batch of {p['jobs']:,} no-op python runs on {cluster} "
           f"({p['runs_per_s']:,.0f} runs/s while sampled) with py-spy at {p['rate']} Hz, "
           f"`--nonblocking`, on the leader ({p['leader']}) and {p['worker']}, from a second "
           "before the fire time to the last run finished. A sample is charged to the "
           "deepest frame in Zeitplan's own code ('ours') or to the innermost frame ('leaf'); "
           "'on CPU' leaves out waiting threads; a thread's wall-clock shares are of its own "
           "samples. Line numbers are those of the code that ran: the run's commit plus the "
           "uncommitted product changes listed above.", ""]
    not_ours = "(not in Zeitplan's code)"
    for name, views in p["processes"].items():
        busy, wall = views.get("cpu", {}), views.get("wall", {})
        if "ours" in busy:
            out.append(f"- {name}, on CPU ({busy['samples']:,} samples = "
                       f"{busy['samples'] / p['rate']:.1f} CPU-s), ours: " + "; ".join(
                           f"`{where}` {share:.0%}" for where, share in busy["ours"][:6]))
            out.append(f"- {name}, on CPU, leaf: " + "; ".join(
                f"`{where}` {share:.0%}" for where, share in busy["leaves"][:5]))
        for thread, entries in sorted((wall.get("ours_by_thread") or {}).items()):
            mine = [(where, share) for where, share in entries if where != not_ours]
            if mine:
                out.append(f"- {name}, thread `{thread}`, wall clock: " + "; ".join(
                    f"`{where}` {share:.0%}" for where, share in entries[:4]))
    return out


def _meaning() -> list[str]:
    return [
        "### What the figures mean",
        "",
        "- *Raw broker round trip* is the ceiling for the cluster's first RabbitMQ node on "
        "this machine: one publish (confirmed) and one consume (acked) per message, nothing "
        "else. A Zeitplan run travels in a pack of up to ten runs and is reported in status "
        "bodies of several reports, so it needs less than one such message (RabbitMQ's "
        "counters in the Details say how much), but also PostgreSQL writes and the job "
        "itself: the ratio is runs carried per message the bare broker carries.",
        "- *CPU* in the Details is every process's on the machine, read from /proc at both "
        "ends of a batch and grouped by component (bench/cpu.py); *RabbitMQ's counters* are "
        "the messages published, delivered and acknowledged over every node in the batch "
        "(bench/broker_ops.py).",
        "- *End to end* counts runs per second from the shared fire time to the last "
        "`finished_at` in the runs table: materialisation, dispatch, execution and status "
        "reporting; job creation is excluded (done before the fire time).",
        "- *Start lateness* is `started_at - scheduled_for` as stamped by the worker (same "
        "clock: one machine).",
        "- *Many schedules* and *memory* store their jobs with COPY, with the columns and "
        "values `jobops.create_job` writes (bench/bulk.py); set-up only, never timed.",
        "- *Failover* is the first `queued_at` under a newer epoch minus the time the signal "
        "was sent, with a run due every 100 ms.",
        "- *RabbitMQ node loss* and *PostgreSQL failover* to the first successful dispatch are "
        "the earliest `started_at` among the runs claimed (`queued_at`) once the killed "
        "process group was gone, minus the time the SIGKILL was sent, with the same trickle: "
        "the first run dispatched after the fault that a worker executed. The standby is "
        "promoted right after the kill (no failure detection is modelled); the old primary "
        "stays down, so that figure is measured once, last in its environment.",
        "",
        "Known limits: every service, daemon and the benchmark share the CPUs, so the figures "
        "are lower than on separate machines and move with other load (see the load "
        "column); ZooKeeper, PostgreSQL with its synchronous standby and RabbitMQ all write "
        "to the same disk; the no-op jobs measure Zeitplan's overhead, not job work; one run "
        "per size, no repetitions, so treat differences under ~10 % as noise.",
    ]


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


def main() -> int:
    """`python -m bench.report`: render the recorded runs into RESULTS.md again (after a
    change to this renderer; the figures are the records')."""
    update_markdown(render_all())
    print(f"updated {RESULTS_MD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
