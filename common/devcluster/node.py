"""The common shape of a ZooKeeper, PostgreSQL or RabbitMQ node: a process and a probe."""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from common.devcluster.process import ManagedProcess, failure

POLL_INTERVAL = 0.1


def wait_for(check: Callable[[], bool], timeout: float, *, name: str, log_path: Path,
             what: str, process: ManagedProcess | None = None) -> None:
    """Poll `check` until it is true; HarnessError after `timeout` or if `process` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if process is not None and not process.is_running():
            raise failure(name, f"exited with status {process.returncode} while waiting "
                                f"until {what}", log_path)
        if time.monotonic() >= deadline:
            raise failure(name, f"not {what} after {timeout:g} s", log_path)
        time.sleep(POLL_INTERVAL)


class ServiceNode(abc.ABC):
    """One node of a service; lifecycle calls act on its whole process group."""

    kind: ClassVar[str]

    def __init__(self, name: str, ports: dict[str, int], process: ManagedProcess) -> None:
        self.name = name
        self.ports = ports
        self.process = process

    @property
    def pid(self) -> int | None:
        """The node's main pid while it runs."""
        return self.process.pid

    @property
    def log_path(self) -> Path:
        """Where the node's output goes."""
        return self.process.log_path

    def start(self) -> None:
        """Start the node without waiting until it is ready."""
        self.process.start()

    def stop(self) -> None:
        """Stop gracefully, then forcibly; idempotent."""
        self.process.stop()

    def kill(self) -> None:
        """SIGKILL the node now."""
        self.process.kill()

    def pause(self) -> None:
        """Freeze the node (SIGSTOP)."""
        self.process.pause()

    def resume(self) -> None:
        """Unfreeze the node (SIGCONT)."""
        self.process.resume()

    def restart(self) -> None:
        """Stop and start again, without waiting until it is ready."""
        self.process.restart()

    def is_running(self) -> bool:
        """True while the node's main process lives (paused included)."""
        return self.process.is_running()

    def wait_ready(self, timeout: float) -> None:
        """Block until the node serves clients; HarnessError (quoting its log) otherwise."""
        wait_for(self.ready, timeout, name=self.name, log_path=self.log_path,
                 what="ready", process=self.process)

    @abc.abstractmethod
    def ready(self) -> bool:
        """One quick readiness probe."""
