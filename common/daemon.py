"""The lifecycle skeleton shared by schedulerd and workerd.

Signal handlers only set flags: the first SIGTERM (or SIGINT) stops after the current
cycle, a second one exits at once; SIGHUP asks for a config reload, which the lifecycle
thread performs. ``sd_notify`` tells systemd READY, RELOADING, STOPPING, STATUS and WATCHDOG
(a no-op outside systemd); WATCHDOG only while every loop the process watches is running.
An unexpected exception in a cycle is logged with a fixed phrase and the daemon lives on.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TypeVar

import structlog

from common import config, logs
from common.errors import ConfigError, ZeitplanError
from common.sections import LogSection


class _Logged(Protocol):
    @property
    def log(self) -> LogSection: ...


C = TypeVar("C", bound=_Logged)

UNEXPECTED = "unexpected error, please report"
log = structlog.get_logger()


def sd_notify(*states: str) -> None:
    """Send states (e.g. ``READY=1``) to systemd's notify socket, if there is one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall("\n".join(states).encode())
    except OSError:
        pass


STALL_AFTER = 30.0  # seconds without a beat before a loop counts as stalled (no watchdog)


def watchdog_interval() -> float | None:
    """systemd's watchdog interval for this process (``WATCHDOG_USEC``), if it has one."""
    usec, pid = os.environ.get("WATCHDOG_USEC"), os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) <= 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6


class Lifecycle:
    """Flags set by signals, a stoppable sleep, and the health of the process's loops.

    Each loop that must keep running beats under its own name (the worker's heartbeat loop,
    a scheduler's status intake, the leader's dispatch loop while it leads). The lifecycle
    thread (`supervise`) tells systemd WATCHDOG=1 only while none of them is stalled, so a
    hung loop gets the process restarted even while its other threads are well; and it
    performs config reloads that SIGHUP asks for.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.stopping = threading.Event()
        self.reload_requested = threading.Event()
        self.ready_reason: str | None = "starting"
        self.held: dict[str, str] = {}  # reasons this process is not ready, besides the above
        self.status_line = "starting"
        self.stall_after = watchdog_interval() or STALL_AFTER
        self._loops: dict[str, float] = {}  # loop name -> its last beat (monotonic)
        self._wake = threading.Event()
        self._stalled_logged: tuple[str, ...] = ()

    def install_signals(self) -> None:
        """Route SIGTERM/SIGINT/SIGHUP to flags (call from the main thread)."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # stack dump for debugging

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping.is_set():
            os._exit(128 + signum)  # second signal: exit now, no clean-up
        self.stopping.set()

    def _on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload_requested.set()
        self._wake.set()

    def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True when a stop was requested meanwhile."""
        return self.stopping.wait(max(0.0, seconds))

    def idle(self, loop: str, seconds: float) -> bool:
        """Sleep up to `seconds` as part of `loop`, which counts as running meanwhile (a
        backoff is no hang); True when a stop was requested."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.beat(loop)
            if self.stopping.wait(min(left, self.stall_after / 4)):
                return True
        self.beat(loop)
        return self.stopping.is_set()

    def beat(self, loop: str = "main") -> None:
        """`loop` ran just now; from now on it counts as stalled after `stall_after` seconds
        without another beat (until `forget`)."""
        self._loops[loop] = time.monotonic()

    def forget(self, loop: str) -> None:
        """`loop` ended on purpose (a leadership term, say): it no longer counts."""
        self._loops.pop(loop, None)

    def stalled(self) -> list[str]:
        """The loops that have not beaten for `stall_after` seconds."""
        now = time.monotonic()
        return sorted(name for name, at in list(self._loops.items())
                      if now - at >= self.stall_after)

    def health(self) -> tuple[bool, bool, str]:
        """(live, ready, reason): live while no loop is stalled."""
        stalled = self.stalled()
        if stalled:
            return False, False, f"{' and '.join(stalled)} loop stalled"
        reason = next(iter(list(self.held.values())), None) or self.ready_reason
        return True, reason is None, reason or "ready"

    def supervise(self, reload: Callable[[], None] | None = None) -> None:
        """Start the lifecycle thread: WATCHDOG=1 (with the status line) about every second
        while no loop is stalled, and `reload()` between RELOADING=1 and READY=1 when SIGHUP
        asked for it (without `reload`, SIGHUP is ignored)."""
        period = min(1.0, self.stall_after / 3)
        threading.Thread(target=guarded(self._supervise, period, reload), daemon=True,
                         name="lifecycle").start()

    def _supervise(self, period: float, reload: Callable[[], None] | None) -> None:
        while True:
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                if reload is not None and not self.stopping.is_set():
                    self._reload(reload)
            stalled = tuple(self.stalled())
            if not stalled:
                sd_notify("WATCHDOG=1", f"STATUS={self.status_line}")
            elif stalled != self._stalled_logged:
                log.error("loop_stalled", loops=list(stalled), seconds=self.stall_after)
            self._stalled_logged = stalled
            self._wake.wait(period)
            self._wake.clear()

    def _reload(self, reload: Callable[[], None]) -> None:
        sd_notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            reload()
        except Exception:  # noqa: BLE001 - a failed reload keeps the running config
            log.exception(UNEXPECTED)
        finally:
            sd_notify("READY=1", f"STATUS={self.status_line}")

    def run_cycles(self, cycle: Callable[[], float], *, on_error_delay: float = 1.0) -> None:
        """Call `cycle()` until stopped; it returns how long to wait before the next one.
        Each pass beats the loop "main"."""
        while not self.stopping.is_set():
            delay = on_error_delay
            try:
                delay = cycle()
            except ZeitplanError as exc:
                log.warning("cycle_failed", error=str(exc))
            except Exception:  # noqa: BLE001 - the daemon must outlive a bug in one cycle
                log.exception(UNEXPECTED)
            self.beat()
            if self.sleep(delay):
                break


def guarded(fn: Callable[..., Any], *args: Any) -> Callable[[], None]:
    """`fn(*args)` for a background thread: logs unexpected errors instead of dying silently."""
    def run() -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - a thread's last line of defence
            log.exception(UNEXPECTED, thread=threading.current_thread().name)
    return run


def connect_with_backoff(connect: Callable[[], None], life: Lifecycle, *, service: str,
                         error: type[Exception]) -> bool:
    """Call `connect` until it succeeds (True) or a stop is requested (False), backing off
    from 0.5 s to 10 s and saying why the process is not ready meanwhile."""
    delay = 0.5
    while not life.stopping.is_set():
        try:
            connect()
            return True
        except error as exc:
            life.ready_reason = f"{service} unreachable"
            log.warning("service_unreachable", service=service, error=str(exc), retry_in=delay)
            life.sleep(delay)
            delay = min(delay * 2, 10.0)
    return False


def reload_config(cls: type[C], path: Path | None, current: C, reloadable: Collection[str]
                  ) -> C | None:
    """Read the config file again. Returns the running config with the `reloadable` keys (or
    whole sections) taken from the file, the log level already applied; other keys that
    changed keep their running values and are logged as needing a restart. None (and the
    problems logged) when the file is not valid: the running config stays."""
    try:
        new = config.load(cls, path)
    except ConfigError as exc:
        log.error("config_reload_failed", problems=exc.problems)
        return None
    changes = config.changed(current, new)
    applied = [k for k in changes if k in reloadable or k.split(".")[0] in reloadable]
    if len(applied) < len(changes):
        log.warning("config_change_needs_restart",
                    keys=[k for k in changes if k not in applied])
    merged = config.merge(current, new, reloadable)
    logs.set_level(merged.log.level)
    log.info("config_reloaded", applied=applied)
    return merged
