"""What the figures were measured on (read from /proc; Linux only)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def describe() -> dict[str, Any]:
    """nproc, memory, CPU model, Python version, kernel and the load average now."""
    return {"nproc": os.cpu_count() or 0, "memory_gib": round(_mem_total_kib() / 2**20, 1),
            "cpu_model": _cpu_model(), "python": platform.python_version(),
            "kernel": platform.release(), "loadavg": list(os.getloadavg())}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_kib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
