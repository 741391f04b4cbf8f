"""Linux /proc look-ups used to find, verify and reap the harness's processes."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

TAG_VARIABLE = "ZEITPLAN_PROCESS_TAG"
"""Environment variable stamped on every child; inherited by everything it spawns."""


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    return raw[raw.rindex(")") + 2:].split()


def is_alive(pid: int) -> bool:
    """True when `pid` exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def state(pid: int) -> str | None:
    """The process's one-letter state ("T" when stopped), None when it is gone."""
    fields = _stat_fields(pid)
    return fields[0] if fields is not None else None


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (None when it is gone)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields is not None else None


def process_group(pid: int) -> int | None:
    """The process group id of `pid` (None when it is gone)."""
    fields = _stat_fields(pid)
    return int(fields[2]) if fields is not None else None


def group_members(pgid: int) -> list[int]:
    """Every live process in process group `pgid`."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                members.append(int(entry))
    return members


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` in the parent tree (children, their children, ...),
    whatever its group or environment."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and fields[0] not in ("Z", "X"):
                children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def has_tag(pid: int, tag: str) -> bool:
    """True when the process was started with ``ZEITPLAN_PROCESS_TAG=tag`` in its environment."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{TAG_VARIABLE}={tag}".encode() in environ.split(b"\0")


def tagged_pids(tags: Iterable[str]) -> list[int]:
    """Every live process carrying one of `tags` (except this process)."""
    wanted = {f"{TAG_VARIABLE}={tag}".encode() for tag in tags}
    if not wanted:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if wanted.intersection(environ.split(b"\0")) and is_alive(int(entry)):
            found.append(int(entry))
    return found


def kill_all(pids: Iterable[int], timeout: float = 5.0) -> None:
    """SIGKILL `pids` and wait (bounded) until none of them is alive."""
    pids = list(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while any(is_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
