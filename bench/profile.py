"""py-spy profiles of running daemons, and where their samples land in Zeitplan's code.

Two recorders per process, both `--nonblocking` (the process is never paused): one with
`--idle` (wall clock: where each thread waits too) and one without (on-CPU samples only).
The raw (collapsed-stack) output is reduced here, purely: each sample is charged to the
deepest frame in Zeitplan's own code (common/, schedulerd/, workerd/), which says which
of our lines the time is spent under, and to its leaf frame, which says what it does there.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

PROJECT_DIRS = ("common/", "schedulerd/", "workerd/")
RATE = 100
TOP = 12
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+):(?P<line>\d+)\)$")
_THREAD = re.compile(r"^thread \(\w+\): ?(?P<name>.*)$")


def py_spy() -> Path:
    """The py-spy executable beside this interpreter (the `bench` extra installs it)."""
    return Path(sys.executable).with_name("py-spy")


@dataclass(frozen=True)
class Frame:
    """One frame of a collapsed stack."""

    func: str
    file: str
    line: int

    @property
    def where(self) -> str:
        """file:line (func)."""
        return f"{self.file}:{self.line} ({self.func})"

    def ours(self) -> bool:
        """True for a frame in Zeitplan's own code."""
        return any(part in self.file for part in PROJECT_DIRS) and "site-packages" not in self.file


def parse_frame(text: str) -> Frame | None:
    """A frame from py-spy's `func (file:line)`; None for anything else."""
    match = _FRAME.match(text.strip())
    if match is None:
        return None
    return Frame(match["func"], match["file"], int(match["line"]))


def thread_group(name: str) -> str:
    """A thread name with its numbers replaced by '#' (slot-1, slot-2... are one group)."""
    return re.sub(r"\d+", "#", name).strip() or "?"


@dataclass
class Summary:
    """Samples of one recording, charged to threads, our frames and leaf frames."""

    samples: int = 0
    threads: Counter[str] = field(default_factory=Counter)
    ours: Counter[str] = field(default_factory=Counter)
    leaves: Counter[str] = field(default_factory=Counter)
    ours_by_thread: dict[str, Counter[str]] = field(default_factory=dict)

    def as_dict(self, top: int = TOP) -> dict[str, Any]:
        """Shares (0-1) of the top entries, for the JSON record; a thread's entries are
        shares of that thread's samples."""
        def share(counter: Counter[str], whole: int) -> list[list[Any]]:
            return [[key, round(n / whole, 4)] for key, n in counter.most_common(top)]
        return {"samples": self.samples, "threads": share(self.threads, self.samples),
                "ours": share(self.ours, self.samples),
                "leaves": share(self.leaves, self.samples),
                "ours_by_thread": {t: share(c, self.threads[t])
                                   for t, c in self.ours_by_thread.items()}}


def summarize(raw: str) -> Summary:
    """Reduce py-spy's raw output (`frame;frame;... count` per line, the root first)."""
    out = Summary()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack.split(";")
        thread = "?"
        match = _THREAD.match(parts[0])
        if match is not None:
            thread = thread_group(match["name"])
            parts = parts[1:]
        frames = [f for f in (parse_frame(p) for p in parts) if f is not None]
        out.samples += count
        out.threads[thread] += count
        mine = [f for f in frames if f.ours()]
        key = mine[-1].where if mine else "(not in Zeitplan's code)"
        out.ours[key] += count
        out.ours_by_thread.setdefault(thread, Counter())[key] += count
        if frames:
            out.leaves[frames[-1].where] += count
    return out


class Recording:
    """py-spy recorders attached to named pids while the `with` block runs."""

    def __init__(self, pids: dict[str, int], directory: Path) -> None:
        self.pids = pids
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self.results: dict[str, dict[str, Any]] = {}

    def path(self, name: str, view: str) -> Path:
        """Where the raw output of one recorder goes."""
        return self.dir / f"{name}-{view}.txt"

    def __enter__(self) -> Recording:
        for name, pid in self.pids.items():
            for view, extra in (("wall", ["--idle"]), ("cpu", [])):
                self.procs[(name, view)] = subprocess.Popen(
                    [str(py_spy()), "record", "-p", str(pid), "-r", str(RATE), "-f", "raw",
                     "--nonblocking", "--threads", "-o", str(self.path(name, view)), *extra],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        for (name, view), proc in self.procs.items():
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            path = self.path(name, view)
            entry = self.results.setdefault(name, {})
            if path.exists():
                entry[view] = summarize(path.read_text(errors="replace")).as_dict()
            else:
                entry[view] = {"error": err.decode(errors="replace").strip()[-500:]}
