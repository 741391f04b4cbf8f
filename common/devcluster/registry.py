"""The pid registry in a state directory: lets the next run kill a crashed run's leftovers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from pathlib import Path

from common.devcluster import procfs
from common.devcluster.process import ManagedProcess


class PidRegistry:
    """A JSON file, ``{tag: {name, pid, start_ticks}}``, of every process started here."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def record(self, proc: ManagedProcess) -> None:
        """Remember a process that has just started (an on_start callback)."""
        pid = proc.pid
        if pid is None:
            return
        with self._lock:
            entries = self._load()
            entries[proc.tag] = {"name": proc.name, "pid": pid,
                                 "start_ticks": procfs.start_ticks(pid)}
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(entries, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)

    def kill_leftovers(self) -> list[str]:
        """SIGKILL every process of a previous run still alive; returns their names."""
        with self._lock:
            names: set[str] = set()
            victims: list[int] = []
            for tag, entry in self._load().items():
                pid = int(str(entry["pid"]))
                # Same pid and start time: the very process we started, not a reused pid.
                if (procfs.is_alive(pid) and procfs.start_ticks(pid) == entry["start_ticks"]
                        and procfs.process_group(pid) == pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                    victims.append(pid)
                strays = procfs.tagged_pids([tag])
                victims += strays
                if strays or pid in victims:
                    names.add(str(entry["name"]))
            procfs.kill_all(victims)
            self.path.unlink(missing_ok=True)
            return sorted(names)

    def clear(self) -> None:
        """Forget every process (after they were all stopped)."""
        with self._lock:
            self.path.unlink(missing_ok=True)

    def _load(self) -> dict[str, dict[str, object]]:
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

