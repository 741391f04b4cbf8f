"""Zeitplan's own daemons on top of a LocalCluster: schedulers and workers as child
processes with generated configs. Used by `schedctl dev up`, `make demo` and the tests."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.db.migrate import migrate
from common.devcluster import LocalCluster, ManagedProcess
from common.devcluster.ports import free_ports
from common.errors import HarnessError


def health_of(port: int) -> dict[str, Any] | None:
    """The /health document served on 127.0.0.1:`port` (also when it says 503), or None
    when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1.0) as resp:
            body: dict[str, Any] = json.loads(resp.read())
            return body
    except urllib.error.HTTPError as exc:
        doc: dict[str, Any] = json.loads(exc.read() or b"{}")
        return doc
    except (OSError, ValueError):
        return None


@dataclass
class Daemon:
    """One schedulerd or workerd process of the stack."""

    name: str
    kind: str
    proc: ManagedProcess
    http_port: int
    config_path: Path

    def health(self) -> dict[str, Any] | None:
        """The /health document, or None when the process does not answer."""
        return health_of(self.http_port)

    def role(self) -> str:
        """leader, standby or worker when up; down or starting otherwise."""
        if not self.proc.is_running():
            return "down"
        doc = self.health()
        if doc is None:
            return "starting"
        return str(doc.get("role", "worker" if self.kind == "workerd" else "starting"))


class Stack:
    """The daemons of a local cluster."""

    def __init__(self, cluster: LocalCluster, state_dir: Path, *, schedulers: int = 3,
                 workers: int = 2, worker_slots: int = 4, session_timeout: float = 6.0,
                 pools: tuple[str, ...] = ("default",), log_format: str = "json",
                 extra: dict[str, dict[str, Any]] | None = None,
                 connect: Callable[[str, str], dict[str, dict[str, Any]]] | None = None
                 ) -> None:
        self.cluster = cluster
        self.dir = state_dir / "daemons"
        self.schedulers_wanted = schedulers
        self.workers_wanted = workers
        self.worker_slots = worker_slots
        self.session_timeout = session_timeout
        self.pools = pools
        self.log_format = log_format
        self.extra = extra or {}
        # (kind, name) -> section overrides applied after `extra`: the fault tests route
        # one daemon's connections through proxies this way.
        self.connect = connect
        self.daemons: list[Daemon] = []

    @property
    def schedulers(self) -> list[Daemon]:
        """The schedulerd processes."""
        return [d for d in self.daemons if d.kind == "schedulerd"]

    @property
    def workers(self) -> list[Daemon]:
        """The workerd processes."""
        return [d for d in self.daemons if d.kind == "workerd"]

    def start(self, progress: Callable[[str], None] = lambda _line: None,
              timeout: float = 60.0) -> None:
        """Migrate the schema, start every daemon, wait until each is healthy and one leads."""
        self.dir.mkdir(parents=True, exist_ok=True)
        applied = migrate(self.cluster.settings.pg_dsn)
        progress(f"schema migrated ({len(applied)} migrations applied)")
        for n in range(1, self.schedulers_wanted + 1):
            self.add("schedulerd", f"sched-{n}")
        for n in range(1, self.workers_wanted + 1):
            self.add("workerd", f"worker-{n}")
        deadline = time.monotonic() + timeout
        for daemon in self.daemons:
            self.wait_healthy(daemon, deadline - time.monotonic())
            progress(f"{daemon.name} ready (pid {daemon.proc.pid}, http {daemon.http_port})")
        leader = self.wait_leader(deadline - time.monotonic())
        progress(f"{leader.name} is the leader")

    def add(self, kind: str, name: str) -> Daemon:
        """Write a config for a new daemon and start it."""
        port = free_ports(1)[0]
        path = self.dir / f"{name}.toml"
        path.write_text(self._config(kind, name, port), encoding="utf-8")
        proc = ManagedProcess(name, [sys.executable, "-m", f"{kind}.main", "-c", str(path)],
                              env={"PYTHONUNBUFFERED": "1"}, cwd=None,
                              log_path=self.dir / f"{name}.log", stop_timeout=40.0)
        self.cluster.add_process(proc)
        proc.start()
        daemon = Daemon(name, kind, proc, port, path)
        self.daemons.append(daemon)
        return daemon

    def _config(self, kind: str, name: str, port: int) -> str:
        s = self.cluster.settings
        sections: dict[str, dict[str, Any]] = {
            "node": {"name": name},
            "zookeeper": {"hosts": s.zk_hosts, "session_timeout": self.session_timeout},
            "broker": {"urls": list(s.amqp_urls)},
            "http": {"listen": f"127.0.0.1:{port}"},
            "log": {"format": self.log_format},
        }
        if kind == "schedulerd":
            sections["database"] = {"dsn": s.pg_dsn}
            sections["leader"] = {"pools": list(self.pools)}
        else:
            # A short drain: stopping a local cluster should not wait for long demo jobs.
            sections["worker"] = {"pools": list(self.pools), "concurrency": self.worker_slots,
                                  "drain_timeout": 5.0}
        for section, values in self.extra.get(kind, {}).items():
            sections.setdefault(section, {}).update(values)
        if self.connect is not None:
            for section, values in self.connect(kind, name).items():
                sections.setdefault(section, {}).update(values)
        return "".join(f"[{section}]\n" + "".join(
            f"{key} = {json.dumps(value)}\n" for key, value in values.items()) + "\n"
            for section, values in sections.items())

    def wait_healthy(self, daemon: Daemon, timeout: float) -> None:
        """Wait until `daemon` answers /health as ready; HarnessError with its log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not daemon.proc.is_running():
                break
            doc = daemon.health()
            if doc and doc.get("ready"):
                return
            time.sleep(0.1)
        tail = daemon.proc.log_path.read_text(errors="replace").splitlines()[-20:]
        raise HarnessError(f"{daemon.name} did not become ready; its log "
                           f"({daemon.proc.log_path}) ends:\n" + "\n".join(tail))

    def leader(self) -> Daemon | None:
        """The scheduler that says it leads, if any."""
        for daemon in self.schedulers:
            if daemon.proc.is_running() and daemon.role() == "leader":
                return daemon
        return None

    def wait_leader(self, timeout: float, *, other_than: Daemon | None = None) -> Daemon:
        """Wait for a leader (not `other_than`); HarnessError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and leader is not other_than:
                return leader
            time.sleep(0.05)
        raise HarnessError(f"no scheduler became leader within {timeout:.0f} s")

    def status(self) -> list[dict[str, Any]]:
        """Every daemon with its role, pid and port."""
        return [{"name": d.name, "kind": d.kind, "role": d.role(), "pid": d.proc.pid,
                 "ports": {"http": d.http_port}, "log": str(d.proc.log_path)}
                for d in self.daemons]

    def stop(self) -> None:
        """Stop the daemons (workers first, so they can report while schedulers consume)."""
        for daemon in self.workers + self.schedulers:
            daemon.proc.stop()
