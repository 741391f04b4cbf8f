"""Each benchmark as a step: run it in an environment and put its figures in the record.

A step takes the environment (`harness.Bench`), the sizes, the record (`doc`) and the
progress printer. Every figure carries the 1-minute load average at its start and end
(`load`), because the machine is shared.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from bench import (
    broker_ops,
    cpu,
    failover,
    harness,
    jobs,
    lateness,
    memory,
    outage,
    peer,
    profile,
    raw_broker,
    schedules,
    throughput,
)
from bench.rss import RssSampler
from bench.sizes import Sizes

Progress = Callable[[str], None]
Step = Callable[[harness.Bench, Sizes, dict[str, Any], Progress], None]


def load() -> float:
    """The 1-minute load average now."""
    return round(os.getloadavg()[0], 2)


def loaded(measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one measurement; its result with the load average at its start and end."""
    before = load()
    result = measure()
    result["load"] = [before, load()]
    return result


def raw(bench: harness.Bench, sizes: Sizes, doc: dict[str, Any], progress: Progress,
        *, key: str = "raw_broker") -> None:
    """The broker's ceiling on this cluster's first node."""
    nodes = len(bench.cluster.settings.amqp_urls)
    progress(f"raw broker round trip ({nodes} RabbitMQ node{'s' if nodes > 1 else ''}): "
             f"{sizes.raw_messages:,} messages")
    window = cpu.CpuWindow({})
    doc[key] = loaded(lambda: raw_broker.measure(bench.cluster.settings.amqp_urls[0],
                                                 sizes.raw_messages, progress, window))
    doc[key]["cpu"] = window.summary(sizes.raw_messages)
    progress("  CPU of the round trip: " + cpu.describe(doc[key]["cpu"], per="msg"))


def _end_to_end(bench: harness.Bench, sizes: Sizes, raw_result: dict[str, Any] | None,
                progress: Progress) -> dict[str, Any]:
    """The python and shell batches with the daemons' RSS sampled throughout."""
    pids = bench.pids()
    leader = bench.leader_name()
    kinds = {d.name: d.kind for d in bench.stack.daemons}
    groups = {pid: "leader" if name == leader else
              "other schedulers" if kinds[name] == "schedulerd" else "workers"
              for name, pid in pids.items()}
    result: dict[str, Any] = {}
    with RssSampler(pids) as sampler:
        for job_type, payload, count in (("python", jobs.PYTHON_NOOP, sizes.python_jobs),
                                         ("shell", jobs.SHELL_NOOP, sizes.shell_jobs)):
            progress(f"end-to-end throughput: {count:,} no-op {job_type} jobs")
            window = cpu.CpuWindow(groups)
            ops = broker_ops.OpsWindow(bench.cluster.rabbit_nodes())
            result[job_type] = loaded(functools.partial(
                throughput.measure, bench.db, job_type=job_type, payload=payload, count=count,
                progress=progress, during=lambda window=window: window,
                around=lambda ops=ops: ops))
            result[job_type]["cpu"] = window.summary(result[job_type]["finished"])
            result[job_type]["broker_ops"] = ops.summary(result[job_type]["finished"])
            compare(result[job_type], raw_result, progress)
            progress("  CPU: " + cpu.describe(result[job_type]["cpu"]))
            if result[job_type]["broker_ops"]:
                progress("  RabbitMQ: " + broker_ops.describe(result[job_type]["broker_ops"]))
    peak = {name: max(sampler.peak_kib.get(name, 0), sampler.hwm_kib.get(name, 0))
            for name in pids}
    result["rss"] = {
        "peak_kib": peak, "leader": leader, "leader_kib": peak.get(leader, 0),
        "schedulerd_max_kib": max(v for k, v in peak.items() if kinds[k] == "schedulerd"),
        "workerd_max_kib": max(v for k, v in peak.items() if kinds[k] == "workerd")}
    progress("peak RSS: " + ", ".join(f"{name} {kib / 1024:.0f} MiB"
                                       for name, kib in sorted(peak.items())))
    return result


def compare(result: dict[str, Any], raw_result: dict[str, Any] | None,
            progress: Progress, *, key: str = "runs_per_s") -> None:
    """Add the figure's ratio to the raw round trip measured in the same environment."""
    if raw_result and raw_result.get("round_trip_per_s"):
        ratio = result[key] / raw_result["round_trip_per_s"]
        result["ratio_to_raw"] = round(ratio, 4)
        progress(f"  = {ratio:.3f} of the raw broker round trip "
                 f"({raw_result['round_trip_per_s']:,.0f} messages/s)")


def end_to_end(bench: harness.Bench, sizes: Sizes, doc: dict[str, Any],
               progress: Progress) -> None:
    """No-op python and shell runs on one RabbitMQ node."""
    doc["throughput"] = _end_to_end(bench, sizes, doc.get("raw_broker"), progress)


def end_to_end_3(bench: harness.Bench, sizes: Sizes, doc: dict[str, Any],
                 progress: Progress) -> None:
    """The same on a 3-node RabbitMQ cluster, against its own raw round trip."""
    part: dict[str, Any] = {}
    raw(bench, sizes, part, progress)
    part.update(_end_to_end(bench, sizes, part["raw_broker"], progress))
    doc["throughput3"] = part


def profiled(bench: harness.Bench, sizes: Sizes, doc: dict[str, Any],
             progress: Progress) -> None:
    """A python batch with py-spy on the leader and the first worker (not a figure)."""
    doc["profile"] = _profile(bench, sizes, progress)


def profiled_3(bench: harness.Bench, sizes: Sizes, doc: dict[str, Any],
               progress: Progress) -> None:
    """The same on a 3-node RabbitMQ cluster (where the throughput target is missed)."""
    doc["profile3"] = _profile(bench, sizes, progress)


def _profile(bench: harness.Bench, sizes: Sizes, progress: Progress) -> dict[str, Any]:
    leader = bench.leader_name()
    worker = sorted(bench.pids("workerd"))[0]
    pids = {"leader": bench.pids()[leader], "worker": bench.pids()[worker]}
    directory = bench.cluster.state_dir / "profiles"
    recording = profile.Recording(pids, directory)
    progress(f"profile: {sizes.profile_jobs:,} no-op python jobs with py-spy on {leader} "
             f"(leader) and {worker}")
    batch = loaded(lambda: throughput.measure(bench.db, job_type="python",
                                              payload=jobs.PYTHON_NOOP,
                                              count=sizes.profile_jobs, progress=progress,
                                              during=lambda: recording))
    for name, views in recording.results.items():
        cpu = views.get("cpu", {})
        top = ", ".join(f"{where} {share:.0%}" for where, share in cpu.get("ours", [])[:3])
        progress(f"  {name} on-CPU: {top}")
    return {"leader": leader, "worker": worker, "rate": profile.RATE,
            "runs_per_s": batch["runs_per_s"], "jobs": sizes.profile_jobs,
            "rabbit_nodes": len(bench.cluster.settings.amqp_urls), "load": batch["load"],
            "raw_files": str(directory), "processes": recording.results}


def steady_lateness(bench: harness.Bench, sizes: Sizes, doc: dict[str, Any],
                    progress: Progress) -> None:
    """Start lateness at each steady rate of the mode."""
    runs = []
    for rate, seconds in sizes.lateness:
        progress(f"lateness: python no-op runs due at {rate:g}/s for {seconds:g} s")
        runs.append(loaded(functools.partial(lateness.measure, bench.db, per_second=rate,
                                             seconds=seconds, progress=progress)))
    doc["lateness"] = {"runs": runs}


def many_schedules(bench: harness.Bench, sizes: Sizes, doc: dict[str, Any],
                   progress: Progress) -> None:
    """Cron jobs firing every minute, stored in bulk."""
    leader = bench.leader_name()
    doc["schedules"] = loaded(lambda: schedules.measure(
        bench.db, count=sizes.cron_jobs, minutes=sizes.cron_minutes, pids=bench.pids(),
        progress=progress))
    doc["schedules"]["leader"] = leader


def memory_use(bench: harness.Bench, sizes: Sizes, doc: dict[str, Any],
               progress: Progress) -> None:
    """RSS at idle, then with `memory_jobs` jobs stored."""
    pids = bench.pids()
    progress(f"memory: idle daemons for {sizes.idle_seconds:g} s")
    idle = loaded(lambda: memory.idle(pids, sizes.idle_seconds))
    progress("  idle RSS: " + ", ".join(f"{name} {kib / 1024:.0f} MiB"
                                         for name, kib in sorted(idle["peak_kib"].items())))
    leader = bench.leader_name()
    stored = loaded(lambda: memory.with_jobs(bench.db, count=sizes.memory_jobs,
                                             seconds=sizes.memory_seconds, pids=pids,
                                             leader=leader, progress=progress))
    kinds = {d.name: d.kind for d in bench.stack.daemons}
    stored["schedulerd_max_kib"] = max(v for k, v in stored["peak_kib"].items()
                                       if kinds[k] == "schedulerd")
    stored["workerd_max_kib"] = max(v for k, v in stored["peak_kib"].items()
                                    if kinds[k] == "workerd")
    idle["kinds"] = kinds
    progress(f"  with {sizes.memory_jobs:,} jobs: leader {leader} peak "
             f"{stored['leader_kib'] / 1024:.0f} MiB, largest workerd "
             f"{stored['workerd_max_kib'] / 1024:.0f} MiB")
    doc["memory"] = {"idle": idle, "jobs": stored}


def leader_failover(bench: harness.Bench, sizes: Sizes, doc: dict[str, Any],
                    progress: Progress) -> None:
    """SIGKILL and SIGTERM to the leader, `failover_trials` times each."""
    progress(f"failover: {sizes.failover_trials} SIGKILL and {sizes.failover_trials} SIGTERM "
             f"trials (ZooKeeper session timeout {harness.SESSION_TIMEOUT:g} s)")
    doc["failover"] = loaded(lambda: failover.measure(
        bench.db, bench.stack, trials=sizes.failover_trials,
        session_timeout=harness.SESSION_TIMEOUT, progress=progress))


def celery_peer(bench: harness.Bench, sizes: Sizes, doc: dict[str, Any],
                progress: Progress) -> None:
    """Zeitplan's 1-s periodic job, then Celery's workload with Zeitplan's daemons stopped."""
    part: dict[str, Any] = {}
    doc["peer"] = part
    zeitplan = (doc.get("throughput") or {}).get("python")
    if zeitplan is None or zeitplan["jobs"] != sizes.peer_tasks:
        progress(f"peer: Zeitplan's side, {sizes.peer_tasks:,} no-op python jobs")
        zeitplan = loaded(lambda: throughput.measure(bench.db, job_type="python",
                                                     payload=jobs.PYTHON_NOOP,
                                                     count=sizes.peer_tasks, progress=progress))
    part["zeitplan"] = zeitplan
    progress(f"peer: Zeitplan's 1-s periodic job for {sizes.periodic_seconds:g} s")
    part["zeitplan_periodic"] = loaded(lambda: lateness.periodic(
        bench.db, seconds=sizes.periodic_seconds, progress=progress))
    progress("peer: stopping Zeitplan's daemons; Celery gets the machine to itself")
    bench.stop_daemons()
    part["celery"] = loaded(lambda: peer.measure(
        bench.cluster, tasks=sizes.peer_tasks, seconds=sizes.periodic_seconds,
        workers=harness.WORKERS, slots=harness.WORKER_SLOTS, progress=progress))
    compare(part["celery"], doc.get("raw_broker"), progress, key="tasks_per_s")
    if part["celery"]["tasks_per_s"]:
        part["zeitplan_over_celery"] = round(zeitplan["runs_per_s"]
                                             / part["celery"]["tasks_per_s"], 3)


def outages(bench: harness.Bench, sizes: Sizes, doc: dict[str, Any],
            progress: Progress) -> None:
    """RabbitMQ node loss `outage_trials` times, then the PostgreSQL failover (last: the old
    primary stays down)."""
    part: dict[str, Any] = {"trickle": failover.TRICKLE}
    doc["outage"] = part
    progress(f"outages: {sizes.outage_trials} RabbitMQ node kill"
             f"{'s' if sizes.outage_trials > 1 else ''} ({outage.RUN_QUEUE}'s leader), then "
             "the PostgreSQL primary killed and the standby promoted")
    with failover.trickle(bench.db) as ids:
        part["rabbitmq"] = loaded(lambda: outage.rabbit_loss(
            bench.db, bench.cluster, ids, trials=sizes.outage_trials, progress=progress))
        part["postgres"] = loaded(lambda: outage.postgres_failover(
            bench.db, bench.cluster, bench.stack, ids, progress=progress))


STEPS: dict[str, Step] = {
    "raw": raw,
    "throughput": end_to_end,
    "profile": profiled,
    "lateness": steady_lateness,
    "failover": leader_failover,
    "peer": celery_peer,
    "throughput3": end_to_end_3,
    "profile3": profiled_3,
    "schedules": many_schedules,
    "memory": memory_use,
    "outage": outages,
}
