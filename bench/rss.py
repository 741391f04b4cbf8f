"""Peak memory of the daemons, sampled from /proc while a benchmark runs."""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType


def status_kib(pid: int, field: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM...), None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


class RssSampler:
    """Samples VmRSS of named pids every `interval` seconds on a thread; on exit it also
    reads VmHWM (the kernel's own high-water mark since the process started)."""

    def __init__(self, pids: dict[str, int], interval: float = 0.25) -> None:
        self.pids = dict(pids)
        self.interval = interval
        self.peak_kib: dict[str, int] = {name: 0 for name in pids}
        self.last_kib: dict[str, int] = {}
        self.hwm_kib: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._read_once()
        for name, pid in self.pids.items():
            hwm = status_kib(pid, "VmHWM")
            if hwm is not None:
                self.hwm_kib[name] = hwm

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._read_once()

    def _read_once(self) -> None:
        for name, pid in self.pids.items():
            rss = status_kib(pid, "VmRSS")
            if rss is None:
                continue
            self.last_kib[name] = rss
            if rss > self.peak_kib[name]:
                self.peak_kib[name] = rss
