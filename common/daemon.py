"""The lifecycle skeleton shared by schedulerd and workerd.

Signal handlers only set flags: the first SIGTERM (or SIGINT) stops after the current
cycle, a second one exits at once; SIGHUP asks for a config reload. ``sd_notify`` tells
systemd READY, RELOADING, STOPPING, STATUS and WATCHDOG (a no-op outside systemd). An
unexpected exception in a cycle is logged with a fixed phrase and the daemon lives on.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import structlog

from common.errors import ZeitplanError

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


class Lifecycle:
    """Flags set by signals, a stoppable sleep, and the health of the main loop."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stopping = threading.Event()
        self.reload_requested = threading.Event()
        self.last_cycle = time.monotonic()
        self.ready_reason: str | None = "starting"
        self.status_line = "starting"
        self._last_notify = 0.0

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

    def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True when a stop was requested meanwhile."""
        return self.stopping.wait(max(0.0, seconds))

    def health(self, stale_after: float = 30.0) -> tuple[bool, bool, str]:
        """(live, ready, reason): live when the loop ran within `stale_after` seconds."""
        live = time.monotonic() - self.last_cycle < stale_after
        reason = "main loop stalled" if not live else (self.ready_reason or "ready")
        return live, live and self.ready_reason is None, reason

    def beat(self) -> None:
        """The main work ran just now: liveness for /health and systemd's watchdog."""
        self.last_cycle = time.monotonic()
        if self.last_cycle - self._last_notify >= 1.0:
            self._last_notify = self.last_cycle
            sd_notify("WATCHDOG=1", f"STATUS={self.status_line}")

    def run_cycles(self, cycle: Callable[[], float], *, on_error_delay: float = 1.0) -> None:
        """Call `cycle()` until stopped; it returns how long to wait before the next one."""
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
