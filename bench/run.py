"""Run Zeitplan's benchmarks on a local cluster and record the figures.

    python -m bench.run [--quick | --full] [--only raw|throughput|lateness ...] [--keep-state]

Starts a LocalCluster (one RabbitMQ node unless --rabbit-nodes), then 3 schedulerd and 2
workerd, runs the selected benchmarks, stops everything (also on Ctrl-C), and writes
bench/results/<UTC timestamp>.json and the generated part of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import harness, jobs, lateness, machine, raw_broker, report, throughput
from bench.rss import RssSampler

BENCHMARKS = ("raw", "throughput", "lateness")


@dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does."""

    mode: str
    raw_messages: int
    python_jobs: int
    shell_jobs: int
    lateness_rate: float
    lateness_seconds: float


SIZES = {
    "quick": Sizes("quick", 5_000, 500, 200, 100.0, 5.0),
    "default": Sizes("default", 50_000, 5_000, 1_000, 100.0, 20.0),
    "full": Sizes("full", 200_000, 50_000, 5_000, 100.0, 20.0),
}


class Progress:
    """Prints one line per event, prefixed with the seconds since the start."""

    def __init__(self) -> None:
        self.began = time.monotonic()

    def __call__(self, line: str) -> None:
        print(f"[{time.monotonic() - self.began:7.1f} s] {line}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="small sizes for a smoke run (about 2 minutes)")
    size.add_argument("--full", action="store_true",
                      help="the performance targets: 50,000 python and 5,000 shell runs")
    parser.add_argument("--only", action="append", choices=BENCHMARKS, metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    parser.add_argument("--rabbit-nodes", type=int, default=1, choices=(1, 3),
                        help="RabbitMQ nodes in the local cluster (default 1)")
    parser.add_argument("--keep-state", action="store_true",
                        help="keep the cluster's state directory and logs afterwards")
    parser.add_argument("--no-write", action="store_true",
                        help="print the figures only; write neither JSON nor RESULTS.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0: every selected benchmark measured)."""
    args = parse_args(argv)
    sizes = SIZES["quick" if args.quick else "full" if args.full else "default"]
    selected = [name for name in BENCHMARKS if not args.only or name in args.only]
    progress = Progress()
    started = datetime.now(UTC).replace(microsecond=0)
    doc: dict[str, Any] = {
        "started_at": started.isoformat(),
        "command": _command(argv),
        "machine": machine.describe(),
        "config": {**asdict(sizes), "benchmarks": selected, "rabbit_nodes": args.rabbit_nodes,
                   "schedulers": harness.SCHEDULERS, "workers": harness.WORKERS,
                   "worker_slots": harness.WORKER_SLOTS},
        "errors": [],
    }
    progress(f"benchmarks: {', '.join(selected)} ({sizes.mode} sizes); load average "
             f"{os.getloadavg()[0]:.2f}")
    interrupted = False
    try:
        with harness.environment(rabbit_nodes=args.rabbit_nodes, progress=progress,
                                 keep=args.keep_state) as bench:
            for name in selected:
                try:
                    _STEPS[name](bench, sizes, doc, progress)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # noqa: BLE001 - recorded; the other benchmarks run
                    bench.keep_state = True
                    doc["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
                    progress(f"{name} FAILED: {type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        interrupted = True
        progress("interrupted: everything stopped; nothing written")
    doc["duration_s"] = round(time.monotonic() - progress.began, 1)
    doc["loadavg_end"] = list(os.getloadavg())
    if interrupted:
        return 130
    if not args.no_write:
        path = report.write_json(doc, started)
        report.update_markdown(report.render(doc, path))
        progress(f"wrote {path} and {report.RESULTS_MD}")
    return 1 if doc["errors"] else 0


def _raw(bench: harness.Bench, sizes: Sizes, doc: dict[str, Any],
         progress: Progress) -> None:
    progress(f"raw broker round trip: {sizes.raw_messages:,} messages")
    doc["raw_broker"] = raw_broker.measure(bench.cluster.settings.amqp_urls[0],
                                           sizes.raw_messages, progress)


def _throughput(bench: harness.Bench, sizes: Sizes, doc: dict[str, Any],
                progress: Progress) -> None:
    stack = bench.stack
    pids = {d.name: d.proc.pid for d in stack.daemons if d.proc.pid is not None}
    leader = stack.leader()
    result: dict[str, Any] = {}
    doc["throughput"] = result
    with RssSampler(pids) as sampler:
        for job_type, payload, count in (("python", jobs.PYTHON_NOOP, sizes.python_jobs),
                                         ("shell", jobs.SHELL_NOOP, sizes.shell_jobs)):
            progress(f"end-to-end throughput: {count:,} no-op {job_type} jobs")
            result[job_type] = throughput.measure(bench.db, job_type=job_type,
                                                  payload=payload, count=count,
                                                  progress=progress)
            _compare(result[job_type], doc, progress)
    peak = {name: max(sampler.peak_kib.get(name, 0), sampler.hwm_kib.get(name, 0))
            for name in pids}
    kinds = {d.name: d.kind for d in stack.daemons}
    leader_name = leader.name if leader else "?"
    result["rss"] = {
        "peak_kib": peak, "leader": leader_name, "leader_kib": peak.get(leader_name, 0),
        "schedulerd_max_kib": max(v for k, v in peak.items() if kinds[k] == "schedulerd"),
        "workerd_max_kib": max(v for k, v in peak.items() if kinds[k] == "workerd")}
    progress("peak RSS: " + ", ".join(f"{name} {kib / 1024:.0f} MiB"
                                       for name, kib in sorted(peak.items())))


def _compare(result: dict[str, Any], doc: dict[str, Any], progress: Progress) -> None:
    raw = doc.get("raw_broker")
    if raw and raw["round_trip_per_s"]:
        ratio = result["runs_per_s"] / raw["round_trip_per_s"]
        result["ratio_to_raw"] = round(ratio, 4)
        progress(f"  = {ratio:.3f} of the raw broker round trip "
                 f"({raw['round_trip_per_s']:,.0f} messages/s)")


def _lateness(bench: harness.Bench, sizes: Sizes, doc: dict[str, Any],
              progress: Progress) -> None:
    progress(f"lateness: python no-op runs due at {sizes.lateness_rate:g}/s for "
             f"{sizes.lateness_seconds:g} s")
    doc["lateness"] = lateness.measure(bench.db, per_second=sizes.lateness_rate,
                                       seconds=sizes.lateness_seconds, progress=progress)


_STEPS = {"raw": _raw, "throughput": _throughput, "lateness": _lateness}


def _command(argv: list[str] | None) -> str:
    python = Path(sys.executable)
    if python.is_relative_to(Path.cwd()):
        python = python.relative_to(Path.cwd())
    rest = sys.argv[1:] if argv is None else argv
    return " ".join([str(python), "-m", "bench.run", *rest])


if __name__ == "__main__":
    sys.exit(main())
