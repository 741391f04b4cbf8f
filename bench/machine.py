"""What the figures were measured on (read from /proc; Linux only)."""

from __future__ import annotations

import os
import platform
import subprocess
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


def code() -> dict[str, Any]:
    """The commit measured, and whether the product code differed from it (read-only git)."""
    root = Path(__file__).resolve().parent.parent
    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout if done.returncode == 0 else ""
    changed = git("status", "--porcelain", "--", "common", "schedulerd", "workerd")
    return {"commit": git("rev-parse", "--short=12", "HEAD").strip() or "unknown",
            "product_changes": [line[3:] for line in changed.splitlines() if line.strip()]}
