"""The peer: the same no-op workload and a 1-s periodic task on Celery 5.

Celery gets what Zeitplan gets: the first node of the same LocalCluster as its broker, two
worker processes with Zeitplan's slots each (`--pool threads`: one process, N task threads,
like workerd's slot threads), and the machine to itself (Zeitplan's daemons are stopped
first). Throughput is measured as Zeitplan's is: from the first publish (Zeitplan: the
shared fire time) to the last task's own finish stamp. Periodic lateness is a task's start
minus the time beat considered it due, over `seconds` of a 1-s schedule; the first fire is
left out on both sides (Zeitplan's first fire is its creation instant). The module the
subprocesses load is `bench.peer_celery`; the parsing here is pure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import stats
from common.devcluster import LocalCluster, ManagedProcess

REPO = Path(__file__).resolve().parent.parent
CELERY_MODULE = "bench.peer_celery"


@dataclass(frozen=True)
class Records:
    """What the Celery tasks wrote: no-op (n, started, finished), ticks (due, sent, started)."""

    noops: list[tuple[int, float, float]]
    ticks: list[tuple[float, float, float]]


def parse(lines: list[str]) -> Records:
    """Parse the task records (lines of `bench.peer_celery._record`); others are ignored."""
    noops: list[tuple[int, float, float]] = []
    ticks: list[tuple[float, float, float]] = []
    for line in lines:
        parts = line.split()
        if len(parts) == 4 and parts[0] == "noop":
            noops.append((int(parts[1]), float(parts[2]), float(parts[3])))
        elif len(parts) == 4 and parts[0] == "tick":
            ticks.append((float(parts[1]), float(parts[2]), float(parts[3])))
    return Records(noops, ticks)


def throughput(noops: list[tuple[int, float, float]], first_publish: float,
               count: int) -> dict[str, Any]:
    """Tasks per second from the first publish to the last finish (distinct tasks only)."""
    done = {n: finished for n, _, finished in noops}
    if not done:
        return {"tasks": count, "finished": 0, "seconds": 0.0, "tasks_per_s": 0.0}
    seconds = max(done.values()) - first_publish
    return {"tasks": count, "finished": len(done), "duplicates": len(noops) - len(done),
            "seconds": round(seconds, 3),
            "tasks_per_s": round(stats.rate(len(done), seconds), 1),
            "first_start_s": round(min(s for _, s, _ in noops) - first_publish, 3)}


def drain(noops: list[tuple[int, float, float]], first: int, count: int) -> dict[str, Any]:
    """Tasks per second of tasks `first`..`first + count - 1` from the first start to the
    last finish: the workers alone, when the queue was filled before they started."""
    mine = {n: (started, finished) for n, started, finished in noops
            if first <= n < first + count}
    if not mine:
        return {"tasks": count, "finished": 0, "seconds": 0.0, "tasks_per_s": 0.0}
    seconds = max(f for _, f in mine.values()) - min(s for s, _ in mine.values())
    return {"tasks": count, "finished": len(mine), "seconds": round(seconds, 3),
            "tasks_per_s": round(stats.rate(len(mine), seconds), 1)}


def periodic(ticks: list[tuple[float, float, float]]) -> dict[str, Any] | None:
    """Start lateness (start - due) of the ticks after the first, in ms, and how far the
    schedule drifted from a fixed 1-s grid (beat counts each period from its last send)."""
    ordered = sorted(ticks)[1:]
    if not ordered:
        return None
    late = [(started - due) * 1000 for due, _, started in ordered]
    sent = [(sent - due) * 1000 for due, sent, _ in ordered]
    span = ordered[-1][0] - ordered[0][0]
    return {"fires": len(ordered),
            "start_ms": stats.censored_summary(late, []),
            "sent_ms": stats.censored_summary(sent, []),
            "mean_period_s": round(span / (len(ordered) - 1), 4) if len(ordered) > 1 else None}


class CeleryProcesses:
    """Celery's worker and beat processes, owned by the cluster (stopped with it)."""

    def __init__(self, cluster: LocalCluster, *, workers: int, slots: int,
                 progress: Callable[[str], None]) -> None:
        self.cluster = cluster
        self.workers = workers
        self.slots = slots
        self.progress = progress
        self.dir = cluster.state_dir / "celery"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.env = {"BENCH_CELERY_BROKER": cluster.settings.amqp_urls[0],
                    "BENCH_CELERY_OUT": str(self.dir), "PYTHONUNBUFFERED": "1"}
        self.procs: list[ManagedProcess] = []

    def _process(self, name: str, *args: str, stop_timeout: float = 20.0) -> ManagedProcess:
        proc = ManagedProcess(name, [sys.executable, "-m", "celery", "-A", CELERY_MODULE,
                                     *args], env=self.env, cwd=REPO,
                              log_path=self.dir / f"{name}.log", stop_timeout=stop_timeout)
        self.cluster.add_process(proc)
        proc.start()
        self.procs.append(proc)
        return proc

    def start_workers(self, timeout: float = 60.0) -> None:
        """Start the workers and wait until each says it is ready."""
        started: list[ManagedProcess] = []
        for n in range(1, self.workers + 1):
            (self.dir / f"ready-w{n}@bench").unlink(missing_ok=True)
            started.append(self._process(f"celery-worker-{n}", "worker", "--pool", "threads",
                          "--concurrency", str(self.slots), "--hostname", f"w{n}@bench",
                          "--without-gossip", "--without-mingle", "--without-heartbeat",
                          "--loglevel", "WARNING",
                          # Stopped only when idle, where a warm (or cold) shutdown still
                          # takes 10 s here: SIGKILL after 3 s loses nothing.
                          stop_timeout=3.0))
        self._wait_files([f"ready-w{n}@bench" for n in range(1, self.workers + 1)], timeout,
                         started)

    def stop_workers(self) -> None:
        """Stop the worker processes (beat is stopped by `run_beat`)."""
        for proc in self.procs:
            if proc.name.startswith("celery-worker-"):
                proc.stop()

    def publish(self, count: int, start: int = 0) -> dict[str, float]:
        """Publish `count` no-op tasks numbered from `start` from a separate process; the
        first and last publish times."""
        done = subprocess.run([sys.executable, "-m", CELERY_MODULE, "publish", str(count),
                               str(start)],
                              cwd=REPO, env={**os.environ, **self.env}, capture_output=True,
                              text=True, timeout=120 + count / 100, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"celery publisher failed: {done.stderr.strip()[-2000:]}")
        result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    def records(self) -> Records:
        """Everything the tasks have written so far."""
        lines: list[str] = []
        for path in sorted(self.dir.glob("tasks-*.log")):
            lines += path.read_text().splitlines()
        return parse(lines)

    def wait_noops(self, count: int, *, timeout: float, stall: float, first: int = 0) -> bool:
        """Poll until no-op tasks `first`..`first + count - 1` finished; False on timeout or
        stall."""
        deadline = time.monotonic() + timeout
        seen, last_change, last_report = -1, time.monotonic(), time.monotonic()
        while True:
            done = len({n for n, _, _ in self.records().noops if first <= n < first + count})
            now = time.monotonic()
            if done != seen:
                seen, last_change = done, now
            if done >= count:
                return True
            if now - last_report >= 5.0:
                self.progress(f"  waiting: {done:,}/{count:,} Celery tasks done")
                last_report = now
            if now > deadline or now - last_change > stall:
                self.progress(f"  gave up waiting: {done:,}/{count:,} Celery tasks done")
                return False
            time.sleep(0.5)

    def run_beat(self, seconds: float) -> None:
        """Run beat for `seconds` after it is up, then stop it and let the last tick run."""
        beat = self._process("celery-beat", "beat", "-S",
                             f"{CELERY_MODULE}.StampingScheduler",
                             "-s", str(self.dir / "beat-schedule"), "--loglevel", "WARNING")
        self._wait_files(["ready-beat"], 60.0, [beat])
        time.sleep(seconds)
        beat.stop()
        time.sleep(2.0)  # the last tick sent is still being run by a worker

    def stop(self) -> None:
        """Stop every Celery process (warm shutdown: SIGTERM)."""
        for proc in reversed(self.procs):
            proc.stop()

    def _wait_files(self, names: list[str], timeout: float,
                    procs: list[ManagedProcess]) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all((self.dir / name).exists() for name in names):
                return
            if any(not p.is_running() for p in procs):
                break
            time.sleep(0.1)
        raise RuntimeError(f"Celery did not become ready ({', '.join(names)}); see the logs "
                           f"in {self.dir}")


def measure(cluster: LocalCluster, *, tasks: int, seconds: float, workers: int, slots: int,
            progress: Callable[[str], None]) -> dict[str, Any]:
    """Celery's end-to-end no-op throughput, then its 1-s periodic lateness."""
    celery = CeleryProcesses(cluster, workers=workers, slots=slots, progress=progress)
    try:
        celery.start_workers()
        progress(f"Celery {version('celery')}: {workers} workers x {slots} threads ready; "
                 f"publishing {tasks:,} no-op tasks")
        published = celery.publish(tasks)
        complete = celery.wait_noops(tasks, timeout=60 + tasks / 20, stall=60)
        result: dict[str, Any] = {
            "version": version("celery"), "workers": workers, "slots": slots,
            "complete": complete,
            "publish_seconds": round(published["last_publish"] - published["first_publish"], 3),
            **throughput(celery.records().noops, published["first_publish"], tasks)}
        progress(f"Celery no-op: {result['finished']:,} tasks in {result['seconds']:.2f} s = "
                 f"{result['tasks_per_s']:,.0f} tasks/s (publishing took "
                 f"{result['publish_seconds']:.2f} s)")
        progress(f"Celery beat: a 1-s periodic task for {seconds:g} s")
        celery.run_beat(seconds)
        result["periodic"] = periodic(celery.records().ticks)
        if result["periodic"]:
            late = result["periodic"]["start_ms"]
            progress(f"Celery 1-s periodic: p50 {late['p50']:.1f} ms, p99 {late['p99']:.1f} "
                     f"ms, max {late['max']:.1f} ms ({result['periodic']['fires']} fires)")
        # The workers alone: fill the queue with the workers stopped, then let them drain
        # it (not comparable with Zeitplan's end to end; it says where Celery's limit is).
        celery.stop_workers()
        celery.publish(tasks, start=tasks)
        celery.start_workers()
        drained = celery.wait_noops(tasks, first=tasks, timeout=60 + tasks / 20, stall=60)
        result["drain"] = {**drain(celery.records().noops, tasks, tasks), "complete": drained}
        progress(f"Celery workers alone (queue filled first): "
                 f"{result['drain']['tasks_per_s']:,.0f} tasks/s")
        return result
    finally:
        celery.stop()
