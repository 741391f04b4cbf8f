"""CPU time by component while a benchmark runs: where a CPU-bound figure's time goes.

Every process on the machine is read from /proc when the window opens and when it closes
(user + system time, with that of its children reaped meanwhile, so a worker's shell jobs
count as the worker's). A process that started inside the window counts whole; one that
ended inside it is missed unless its parent reaped it. Processes are grouped by what they
are: the leader, the other schedulers and the workers by pid, the services by command.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK")
SERVICES = (("beam.smp", "rabbitmq"), ("erl_child_setup", "rabbitmq"), ("epmd", "rabbitmq"),
            ("inet_gethost", "rabbitmq"), ("postgres", "postgresql"))
OTHER = "other (the benchmark, other users)"


@dataclass(frozen=True)
class Sample:
    """One process at one moment."""

    comm: str
    cmdline: str
    ticks: int  # utime + stime + cutime + cstime, in clock ticks
    started: int = 0  # clock ticks after boot: a pid with another start is another process


def parse_stat(text: str) -> tuple[str, int, int]:
    """(comm, CPU ticks with reaped children's, start time) from /proc/<pid>/stat's text."""
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    # After the command: state is field 3 of stat(5), utime 14 ... cstime 17, starttime 22.
    return comm, sum(int(v) for v in fields[11:15]), int(fields[19])


def snapshot() -> dict[int, Sample]:
    """Every readable process now."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm, ticks, started = parse_stat((entry / "stat").read_text())
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to read
        out[int(entry.name)] = Sample(comm, cmdline, ticks, started)
    return out


def classifier(daemons: Mapping[int, str]) -> Callable[[int, Sample], str]:
    """Names a process's group: `daemons` maps the daemons' pids to their group (leader,
    other schedulers, workers); services are told by their command."""
    def group(pid: int, sample: Sample) -> str:
        if pid in daemons:
            return daemons[pid]
        for comm, name in SERVICES:
            if sample.comm == comm:
                return name
        if sample.comm == "java" and "zookeeper" in sample.cmdline.lower():
            return "zookeeper"
        return OTHER
    return group


def account(before: Mapping[int, Sample], after: Mapping[int, Sample],
            group: Callable[[int, Sample], str]) -> dict[str, float]:
    """CPU seconds by group between two snapshots, most first."""
    used: dict[str, float] = {}
    for pid, sample in after.items():
        start = before.get(pid)
        ticks = sample.ticks - (start.ticks if start is not None
                                and start.started == sample.started else 0)
        if ticks > 0:
            name = group(pid, sample)
            used[name] = used.get(name, 0.0) + ticks / TICKS
    return dict(sorted(used.items(), key=lambda item: -item[1]))


def summary(used: Mapping[str, float], seconds: float, runs: int,
            cpus: int) -> dict[str, Any]:
    """The figures of one window: CPU seconds and ms per run by group, and how busy the
    machine's CPUs were (1.0: all of them all the time)."""
    total = sum(used.values())
    return {"seconds": round(seconds, 2), "cpus": cpus, "runs": runs,
            "busy": round(total / (cpus * seconds), 3) if seconds > 0 else 0.0,
            "cpu_s": {name: round(value, 2) for name, value in used.items()},
            "ms_per_run": {name: round(1000 * value / runs, 3) if runs else 0.0
                           for name, value in used.items()}}


class CpuWindow:
    """A context manager that accounts CPU time by group while it is entered."""

    def __init__(self, daemons: Mapping[int, str]) -> None:
        self.group = classifier(daemons)
        self.used: dict[str, float] = {}
        self.seconds = 0.0
        self._before: dict[int, Sample] = {}
        self._began = 0.0

    def __enter__(self) -> CpuWindow:
        self._before = snapshot()
        self._began = time.monotonic()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.seconds = time.monotonic() - self._began
        self.used = account(self._before, snapshot(), self.group)

    def summary(self, runs: int) -> dict[str, Any]:
        """The window's figures for `runs` runs (see :func:`summary`)."""
        return summary(self.used, self.seconds, runs, os.cpu_count() or 1)


def describe(figures: Mapping[str, Any], *, per: str = "run") -> str:
    """One line for a window's figures (of :func:`summary`; `per` names what was counted)."""
    parts = [f"{name} {value:,.1f} CPU-s ({figures['ms_per_run'][name]:.2f} ms/{per})"
             for name, value in figures["cpu_s"].items()]
    return (f"{figures['seconds']:.1f} s on {figures['cpus']} CPUs, "
            f"{figures['busy']:.0%} busy: " + ", ".join(parts))
