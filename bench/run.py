"""Run Zeitplan's benchmarks on local clusters and record the figures.

    python -m bench.run [--quick | --full] [--only NAME ...] [--keep-state] [--no-write]

Benchmarks run in five environments, each a fresh LocalCluster (3 ZooKeeper nodes,
PostgreSQL primary + synchronous standby, RabbitMQ) with 3 schedulerd and 2 workerd,
stopped at the end (also on Ctrl-C or an error), one after the other:

  main       1 RabbitMQ node: raw, throughput, profile, lateness, failover, peer
             (raw runs whenever throughput or peer does: they are ratios to it)
  rabbit3    3 RabbitMQ nodes: throughput3 (its own raw round trip, then end to end),
             profile3 (py-spy on the leader and a worker there)
  schedules  many cron jobs (its jobs keep firing, so it gets its own cluster)
  memory     idle RSS, then RSS with many jobs stored
  outage     3 RabbitMQ nodes: the run queue's leader killed, then the PostgreSQL primary
             killed and the standby promoted (last: the old primary cannot come back)

Writes bench/results/<UTC timestamp>.json and the generated part of bench/RESULTS.md.
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

from bench import harness, machine, report, steps
from bench.sizes import SIZES, Sizes


@dataclass(frozen=True)
class Environment:
    """One cluster and the benchmarks run on it, in order."""

    name: str
    rabbit_nodes: int
    benchmarks: tuple[str, ...]


ENVIRONMENTS = (
    Environment("main", 1, ("raw", "throughput", "profile", "lateness", "failover", "peer")),
    Environment("rabbit3", 3, ("throughput3", "profile3")),
    Environment("schedules", 1, ("schedules",)),
    Environment("memory", 1, ("memory",)),
    Environment("outage", 3, ("outage",)),
)
BENCHMARKS = tuple(name for env in ENVIRONMENTS for name in env.benchmarks)
NEEDS_RAW = ("throughput", "peer")


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
    size.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    size.add_argument("--full", action="store_true",
                      help="the issue's sizes (50,000 python runs, 100,000 cron jobs, "
                           "1,000,000 jobs stored, 10 failovers each...)")
    parser.add_argument("--only", action="append", choices=BENCHMARKS, metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    parser.add_argument("--keep-state", action="store_true",
                        help="keep the clusters' state directories and logs afterwards")
    parser.add_argument("--no-write", action="store_true",
                        help="print the figures only; write neither JSON nor RESULTS.md")
    return parser.parse_args(argv)


def selection(only: list[str] | None) -> list[Environment]:
    """The environments to start and the benchmarks to run in each (raw added when a
    selected benchmark is a ratio to it)."""
    chosen = set(only or BENCHMARKS)
    if chosen & set(NEEDS_RAW):
        chosen.add("raw")
    plan = []
    for env in ENVIRONMENTS:
        names = tuple(name for name in env.benchmarks if name in chosen)
        if names:
            plan.append(Environment(env.name, env.rabbit_nodes, names))
    return plan


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0: every selected benchmark measured)."""
    args = parse_args(argv)
    sizes = SIZES["quick" if args.quick else "full" if args.full else "default"]
    plan = selection(args.only)
    progress = Progress()
    started = datetime.now(UTC).replace(microsecond=0)
    doc: dict[str, Any] = {
        "format": report.FORMAT,
        "started_at": started.isoformat(),
        "command": _command(argv),
        "machine": machine.describe(),
        "code": machine.code(),
        "config": {**asdict(sizes), "benchmarks": [n for e in plan for n in e.benchmarks],
                   "schedulers": harness.SCHEDULERS, "workers": harness.WORKERS,
                   "worker_slots": harness.WORKER_SLOTS,
                   "session_timeout_s": harness.SESSION_TIMEOUT},
        "environments": {},
        "errors": [],
    }
    progress(f"{sizes.mode} sizes; " + "; ".join(
        f"{e.name} ({e.rabbit_nodes} RabbitMQ node{'s' if e.rabbit_nodes > 1 else ''}): "
        f"{', '.join(e.benchmarks)}" for e in plan) + f"; load average {steps.load():.2f}")
    try:
        for env in plan:
            _run_environment(env, sizes, doc, progress, keep=args.keep_state)
    except KeyboardInterrupt:
        progress("interrupted: everything stopped; nothing written")
        return 130
    doc["duration_s"] = round(time.monotonic() - progress.began, 1)
    doc["loadavg_end"] = list(os.getloadavg())
    if not args.no_write:
        path = report.write_json(doc, started)
        report.update_markdown(report.render_all())
        progress(f"wrote {path} and {report.RESULTS_MD}")
    return 1 if doc["errors"] else 0


def _run_environment(env: Environment, sizes: Sizes, doc: dict[str, Any],
                     progress: Progress, *, keep: bool) -> None:
    record: dict[str, Any] = {"rabbit_nodes": env.rabbit_nodes,
                              "benchmarks": list(env.benchmarks), "load_start": steps.load()}
    doc["environments"][env.name] = record
    began = time.monotonic()
    progress(f"== environment {env.name}: {', '.join(env.benchmarks)}")
    try:
        with harness.environment(rabbit_nodes=env.rabbit_nodes, progress=progress,
                                 keep=keep) as bench:
            for name in env.benchmarks:
                try:
                    steps.STEPS[name](bench, sizes, doc, progress)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # noqa: BLE001 - recorded; the other benchmarks run
                    bench.keep_state = True
                    doc["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
                    progress(f"{name} FAILED: {type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - a cluster that would not start
        doc["errors"].append(f"environment {env.name}: {type(exc).__name__}: {exc}")
        progress(f"environment {env.name} FAILED: {type(exc).__name__}: {exc}")
    record["load_end"] = steps.load()
    record["seconds"] = round(time.monotonic() - began, 1)


def _command(argv: list[str] | None) -> str:
    python = Path(sys.executable)
    if python.is_relative_to(Path.cwd()):
        python = python.relative_to(Path.cwd())
    rest = sys.argv[1:] if argv is None else argv
    return " ".join([str(python), "-m", "bench.run", *rest])


if __name__ == "__main__":
    sys.exit(main())
