"""LocalCluster: ZooKeeper, PostgreSQL and RabbitMQ as child processes under one state dir.

A state directory holds one run: start() first kills whatever a crashed previous run left
(through the pid registry), wipes the services' directories and starts afresh on new
free ports. Logs go to ``<state>/logs/<node>.log``.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

from common.devcluster import cleanup, postgres, rabbitmq, zookeeper
from common.devcluster.node import ServiceNode
from common.devcluster.process import ManagedProcess
from common.devcluster.registry import PidRegistry
from common.devcluster.settings import ClusterSettings
from common.errors import HarnessError

_SERVICE_DIRS = ("zk", "pg", "rabbitmq", "logs")


class LocalCluster:
    """Start, control and stop a local cluster; `progress` may be called from worker threads."""

    def __init__(self, state_dir: Path, *, zk_nodes: int = 3, rabbit_nodes: int = 3,
                 pg_standby: bool = True, progress: Callable[[str], None] | None = None,
                 timeout: float = 120.0) -> None:
        self.state_dir = state_dir.absolute()
        self.nodes: dict[str, ServiceNode] = {}
        self.timeout = timeout
        self._zk_nodes = zk_nodes
        self._rabbit_nodes = rabbit_nodes
        self._pg_standby = pg_standby
        self._progress = progress or (lambda message: None)
        self._registry = PidRegistry(self.state_dir / "pids.json")
        self._helpers: list[ManagedProcess] = []  # epmd; started before the nodes using it
        self._added: list[ManagedProcess] = []  # daemons started later by the caller
        self._settings: ClusterSettings | None = None
        self._running = False
        self._lock = threading.RLock()

    @property
    def settings(self) -> ClusterSettings:
        """Connection settings of the last start(); HarnessError before any."""
        if self._settings is None:
            raise HarnessError("the local cluster has not been started")
        return self._settings

    def start(self) -> ClusterSettings:
        """Start every service concurrently and wait until all are ready (no-op if running).

        After stop(), starts afresh on new ports: nodes and settings are replaced.
        """
        if self._running:
            return self.settings
        began = time.monotonic()
        self._prepare_state_dir()
        self.nodes, self._helpers, self._running = {}, [], True
        cleanup.register(self)
        try:
            pg_nodes, zk_nodes, rabbit_nodes = self._launch()
        except BaseException:
            self.stop()
            raise
        primary, standby = pg_nodes[0], (pg_nodes[1] if len(pg_nodes) > 1 else None)
        hosts = [primary, *([standby] if standby else [])]
        self._settings = ClusterSettings(
            pg_dsn=(f"host={','.join('127.0.0.1' for _ in hosts)} "
                    f"port={','.join(str(node.ports['pg']) for node in hosts)} "
                    f"dbname={postgres.DATABASE} user={primary.db_user} "
                    "target_session_attrs=read-write"),
            pg_primary_dsn=primary.dsn(),
            pg_standby_dsn=standby.dsn() if standby else "",
            zk_hosts=zookeeper.hosts(zk_nodes),
            amqp_urls=tuple(node.amqp_url for node in rabbit_nodes))
        self._progress(f"cluster ready in {time.monotonic() - began:.1f} s "
                       f"(state and logs in {self.state_dir})")
        return self._settings

    def stop(self) -> None:
        """Stop every process started here (added daemons first); idempotent."""
        with self._lock:
            _stop_concurrently(reversed(self._added))
            _stop_concurrently(self.nodes.values())
            _stop_concurrently(self._helpers)
            self._registry.clear()
            self._running = False
            cleanup.unregister(self)

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def node(self, name: str) -> ServiceNode:
        """The node called `name` ("zk1", "pg-primary", "rabbit2", ...)."""
        try:
            return self.nodes[name]
        except KeyError:
            raise HarnessError(f"no node {name!r}; nodes: {', '.join(self.nodes)}") from None

    def promote_standby(self) -> None:
        """pg_ctl promote on the standby; returns once it accepts writes."""
        standby = self.node("pg-standby")
        assert isinstance(standby, postgres.PostgresNode)
        postgres.promote(standby, self.timeout)
        standby.upstream = None

    def rabbit_nodes(self) -> list[rabbitmq.RabbitNode]:
        """The RabbitMQ nodes, running or not."""
        return [node for node in self.nodes.values() if isinstance(node, rabbitmq.RabbitNode)]

    def queue_leaders(self) -> dict[str, str]:
        """Queue name -> the RabbitMQ node name (``rabbit1@host``) that leads it, as the
        first live node that answers reports it (empty when none does)."""
        for node in self.rabbit_nodes():
            if node.is_running():
                leaders = node.queue_leaders()
                if leaders:
                    return leaders
        return {}

    def queue_leader(self, queue: str) -> rabbitmq.RabbitNode | None:
        """The RabbitMQ node that leads `queue` (None while no live node names one)."""
        name = self.queue_leaders().get(queue)
        return next((node for node in self.rabbit_nodes() if node.nodename == name), None)

    def add_process(self, proc: ManagedProcess) -> ManagedProcess:
        """Own `proc` too: it is recorded in the pid registry and stopped with the cluster."""
        proc.on_start = self._registry.record
        if proc.is_running():
            self._registry.record(proc)
        self._added.append(proc)
        return proc

    def status(self) -> list[dict[str, object]]:
        """One row per node and process: name, kind, pid, ports, running."""
        rows: list[dict[str, object]] = [
            {"name": node.name, "kind": node.kind, "pid": node.pid, "ports": dict(node.ports),
             "running": node.is_running()} for node in self.nodes.values()]
        rows += [{"name": proc.name, "kind": "process", "pid": proc.pid, "ports": {},
                  "running": proc.is_running()} for proc in [*self._helpers, *self._added]]
        return rows

    def _prepare_state_dir(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self.state_dir.chmod(0o755)  # the postgres user must get through
        killed = self._registry.kill_leftovers()
        if killed:
            self._progress(f"killed leftovers of a previous run: {', '.join(killed)}")
        for name in _SERVICE_DIRS:
            shutil.rmtree(self.state_dir / name, ignore_errors=True)

    def _launch(self) -> tuple[list[postgres.PostgresNode], list[zookeeper.ZooKeeperNode],
                               list[rabbitmq.RabbitNode]]:
        """Build every node, bring the services up concurrently, raise what failed."""
        logs = self.state_dir / "logs"
        logs.mkdir()
        record = self._registry.record
        jobs: dict[str, Callable[[], None]] = {}
        pg_nodes = postgres.build_pair(self.state_dir / "pg", logs, standby=self._pg_standby,
                                       on_start=record)
        jobs["postgres"] = lambda: postgres.bring_up(pg_nodes, self.timeout)
        zk_nodes: list[zookeeper.ZooKeeperNode] = []
        if self._zk_nodes:
            zk_nodes = zookeeper.build_ensemble(self.state_dir / "zk", logs, self._zk_nodes,
                                                on_start=record)
            jobs["zookeeper"] = lambda: _start_all(zk_nodes, self.timeout)
        rabbit_nodes: list[rabbitmq.RabbitNode] = []
        if self._rabbit_nodes:
            epmd, rabbit_nodes = rabbitmq.build_cluster(self.state_dir / "rabbitmq", logs,
                                                        self._rabbit_nodes, on_start=record)
            self._helpers.append(epmd)
            jobs["rabbitmq"] = lambda: rabbitmq.bring_up(epmd, rabbit_nodes, self.timeout)
        for node in [*pg_nodes, *zk_nodes, *rabbit_nodes]:
            self.nodes[node.name] = node
        errors = self._run_concurrently(jobs)
        if errors:
            raise HarnessError("\n".join(str(error) for error in errors)) from errors[0]
        return pg_nodes, zk_nodes, rabbit_nodes

    def _run_concurrently(self, jobs: dict[str, Callable[[], None]]) -> list[BaseException]:
        errors: list[BaseException] = []

        def run(service: str, job: Callable[[], None]) -> None:
            began = time.monotonic()
            try:
                job()
            except BaseException as exc:  # reported to the caller's thread below
                errors.append(exc)
                return
            self._progress(f"{service} ready in {time.monotonic() - began:.1f} s")

        threads = [threading.Thread(target=run, args=item, name=f"devcluster-{item[0]}",
                                    daemon=True)
                   for item in jobs.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return errors


def _start_all(nodes: list[zookeeper.ZooKeeperNode], timeout: float) -> None:
    for node in nodes:
        node.start()
    for node in nodes:
        node.wait_ready(timeout)


def _stop_concurrently(items: Iterable[cleanup.Stoppable]) -> None:
    threads = [threading.Thread(target=item.stop) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
