"""The record of a run: bench/results/<UTC timestamp>.json, and the generated part of
bench/RESULTS.md (between the markers; whatever is outside them is hand-written and kept)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import stats

START = "<!-- results:start -->"
END = "<!-- results:end -->"
HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
RESULTS_MD = HERE / "RESULTS.md"

_HEADER = """# Zeitplan benchmarks

`make bench` (or `.venv/bin/python -m bench.run [--quick|--full] [--only NAME]`) rewrites
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


def render(doc: dict[str, Any], json_path: Path | None) -> str:
    """The generated Markdown: when, where, how, the figures and what they mean."""
    m = doc["machine"]
    cfg = doc["config"]
    lines = [
        f"## Latest run: {doc['started_at']}",
        "",
        f"- Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB memory, "
        f"Python {m['python']}, Linux {m['kernel']}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['loadavg'])}, at end "
        f"{', '.join(f'{x:.2f}' for x in doc.get('loadavg_end', []))}",
        f"- Command: `{doc['command']}` (mode: {cfg['mode']}), {doc['duration_s']:.0f} s in all",
        f"- Cluster: {cfg['rabbit_nodes']} RabbitMQ node, 3 ZooKeeper nodes, PostgreSQL "
        f"primary + synchronous standby; {cfg['schedulers']} schedulerd, {cfg['workers']} "
        f"workerd with {cfg['worker_slots']} slots each; everything on this one machine",
    ]
    if json_path is not None:
        lines.append(f"- Raw record: `bench/results/{json_path.name}`")
    if doc.get("errors"):
        lines.append(f"- **Errors:** {'; '.join(doc['errors'])}")
    lines += ["", "| Figure | Value | vs raw broker |", "|---|---|---|"]
    raw = doc.get("raw_broker")
    raw_rate = float(raw["round_trip_per_s"]) if raw else 0.0
    if raw:
        lines.append(f"| Raw broker round trip ({raw['messages']:,} messages) | "
                     f"{raw_rate:,.0f} msg/s | 1.00 |")
        lines.append(f"| Raw publish, waiting for each confirm | "
                     f"{raw['confirm_each_per_s']:,.0f} msg/s | "
                     f"{_ratio(raw['confirm_each_per_s'], raw_rate)} |")
    tp = doc.get("throughput") or {}
    for job_type in ("python", "shell"):
        r = tp.get(job_type)
        if r:
            flag = "" if r["complete"] else " (INCOMPLETE)"
            lines.append(f"| End to end, {r['jobs']:,} no-op `{job_type}` runs{flag} | "
                         f"{r['runs_per_s']:,.0f} runs/s | {_ratio(r['runs_per_s'], raw_rate)} |")
    late = doc.get("lateness")
    if late and late.get("start_ms"):
        s = late["start_ms"]
        lines.append(f"| Start lateness at {late['rate_per_s']:g} runs/s "
                     f"({s['count']:,} runs), p50 / p99 / max | "
                     f"{s['p50']:,.0f} / {s['p99']:,.0f} / {s['max']:,.0f} ms | |")
    rss = tp.get("rss")
    if rss:
        lines.append(f"| Peak RSS, schedulerd (leader {rss['leader']}) / largest schedulerd | "
                     f"{_mib(rss['leader_kib'])} / {_mib(rss['schedulerd_max_kib'])} | |")
        lines.append(f"| Peak RSS, workerd (largest) | {_mib(rss['workerd_max_kib'])} | |")
    lines += ["", *_details(doc), "", *_meaning(doc)]
    return "\n".join(lines)


def _details(doc: dict[str, Any]) -> list[str]:
    out = ["### Details", ""]
    raw = doc.get("raw_broker")
    if raw:
        out.append(f"- Raw broker: {raw['method']}; {raw['body_bytes']}-byte bodies; the "
                   f"publisher alone reached {raw['publish_per_s']:,.0f}/s.")
    tp = doc.get("throughput") or {}
    for job_type in ("python", "shell"):
        r = tp.get(job_type)
        if r:
            out.append(
                f"- `{job_type}`: {r['finished']:,} of {r['jobs']:,} runs finished "
                f"({', '.join(f'{k} {v:,}' for k, v in sorted(r['states'].items()))}) in "
                f"{r['seconds']:.2f} s from the fire time; the leader had claimed the last run "
                f"for dispatch at +{r['last_queued_s']:.2f} s and the first started at "
                f"+{r['first_start_s']:.2f} s. Jobs created in {r['creation_seconds']:.1f} s "
                f"(not measured), {r['created_before_fire_s']:.1f} s before the fire time.")
    late = doc.get("lateness")
    if late and late.get("start_ms"):
        q = late["queued_ms"]
        out.append(f"- Lateness: {late['jobs']:,} python no-op jobs due evenly at "
                   f"{late['rate_per_s']:g}/s over {late['seconds']:g} s; dispatch lateness "
                   f"(queued_at - scheduled_for) p50 {q['p50']:,.0f} ms, p99 {q['p99']:,.0f} ms, "
                   f"max {q['max']:,.0f} ms.")
    rss = tp.get("rss")
    if rss:
        per = ", ".join(f"{name} {_mib(kib)}" for name, kib in sorted(rss["peak_kib"].items()))
        out.append(f"- Peak RSS per daemon during the throughput runs (VmRSS sampled every "
                   f"0.25 s, or VmHWM when larger): {per}.")
    return out


def _meaning(doc: dict[str, Any]) -> list[str]:
    return [
        "### What the figures mean",
        "",
        "- *Raw broker round trip* is the ceiling for one RabbitMQ node on this machine: one "
        "publish (confirmed) and one consume (acked) per message, nothing else. A Zeitplan "
        "run costs at least two such trips (the run message, then the status report, though "
        "reports are batched) plus PostgreSQL writes and the job itself, so the ratio says how "
        "much of the broker's capacity one run uses.",
        "- *End to end* counts runs per second from the shared fire time to the last "
        "`finished_at` in the runs table: materialisation, dispatch, execution and status "
        "reporting; job creation is excluded (done before the fire time).",
        "- *Start lateness* is `started_at - scheduled_for` as stamped by the worker (same "
        "clock: one machine).",
        "",
        "Known limits: every service, daemon and the benchmark share the CPUs, so the figures "
        "are lower than on separate machines and move with other load (see the load "
        "average); ZooKeeper, PostgreSQL with its synchronous standby and RabbitMQ all write "
        "to the same disk; the no-op jobs measure Zeitplan's overhead, not job work; one run "
        "per size, no repetitions, so treat differences under ~10 % as noise.",
    ]


def _ratio(part: float, whole: float) -> str:
    value = stats.ratio(part, whole)
    return f"{value:.3f}" if value is not None else "n/a"


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"
