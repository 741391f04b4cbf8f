"""One fault scenario's world: a private cluster, the daemons, optional proxies between
daemons and services, the ledger, and the workload; torn down (logs kept on failure) after
the test."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from common.db import Database
from common.devcluster import LocalCluster, TcpProxy
from common.devcluster.postgres import DATABASE, PostgresNode
from common.devcluster.rabbitmq import RabbitNode
from common.devstack import Daemon, Stack
from tests.faults.checker import Faults, Report, settle
from tests.faults.ledger import Ledger
from tests.faults.workload import Workload, phase
from tests.integration.support import wait_for

SESSION_TIMEOUT = 4.0
SERVICES = {"zookeeper": "zk", "rabbitmq": "rabbit", "postgres": "pg-"}
_log = logging.getLogger("faults")


class FaultEnv:
    """Cluster + stack (+ proxies for the daemons of the kinds in `proxied`)."""

    def __init__(self, state_dir: Path, *, proxied: tuple[str, ...] = (),
                 **stack_options: Any) -> None:
        self.dir = state_dir
        self.cluster = LocalCluster(state_dir, progress=_log.info)
        self.proxied = proxied
        self.proxies: dict[str, dict[str, TcpProxy]] = {}  # daemon -> node -> proxy
        self.stack = Stack(self.cluster, state_dir, session_timeout=SESSION_TIMEOUT,
                           connect=self._connect, **stack_options)
        self.ledger = Ledger(state_dir / "ledger")
        self._db: Database | None = None
        self.figures: list[str] = []

    # -- life ----------------------------------------------------------------------------
    def start(self) -> FaultEnv:
        """Start the services and the daemons; returns self."""
        began = time.monotonic()
        self.cluster.start()
        _enable_feature_flags(self.cluster)
        self.stack.start(progress=_log.info)
        _log.info("fault env ready in %.1f s", time.monotonic() - began)
        return self

    @property
    def db(self) -> Database:
        """The test's own pool on the (multi-host) DSN the daemons use."""
        if self._db is None:
            self._db = Database(self.cluster.settings.pg_dsn, max_size=4, name="faults")
        return self._db

    def close(self, keep: bool) -> None:
        """Stop everything; remove the state directory unless `keep`."""
        if self._db is not None:
            self._db.close()
        for daemon in self.stack.daemons:  # checked already: no need to drain them
            daemon.proc.kill()
        self.cluster.stop()
        for links in self.proxies.values():
            for proxy in links.values():
                proxy.close()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def daemon(self, name: str) -> Daemon:
        """The daemon called `name`."""
        return next(d for d in self.stack.daemons if d.name == name)

    # -- proxies -------------------------------------------------------------------------
    def _connect(self, kind: str, name: str) -> dict[str, dict[str, Any]]:
        """Config overrides: each daemon lists the RabbitMQ nodes in its own order (so the
        connections spread over the nodes, as in production), and the daemons of the
        proxied kinds reach every service through proxies of their own."""
        turn = (int(name.rsplit("-", 1)[1]) + (kind == "workerd")) % len(
            self.cluster.settings.amqp_urls)
        if kind not in self.proxied:
            urls = list(self.cluster.settings.amqp_urls)
            return {"broker": {"urls": urls[turn:] + urls[:turn]}}
        links = self.proxies.setdefault(name, {})
        for node in self.cluster.nodes.values():
            port = node.ports.get("client") or node.ports.get("amqp") or node.ports["pg"]
            if node.name not in links:
                links[node.name] = TcpProxy(port, name=f"{name}->{node.name}")
        zk = [p for n, p in links.items() if n.startswith("zk")]
        rabbit = [p for n, p in links.items() if n.startswith("rabbit")]
        pg = [p for n, p in links.items() if n.startswith("pg-")]
        primary = self.cluster.node("pg-primary")
        assert isinstance(primary, PostgresNode)
        overrides: dict[str, dict[str, Any]] = {
            "zookeeper": {"hosts": ",".join(p.address for p in zk)},
            "broker": {"urls": [f"amqp://guest:guest@{p.address}/%2F"
                                for p in rabbit[turn:] + rabbit[:turn]]},
        }
        if kind == "schedulerd":
            overrides["database"] = {"dsn": (
                f"host={','.join('127.0.0.1' for _ in pg)} "
                f"port={','.join(str(p.port) for p in pg)} dbname={DATABASE} "
                f"user={primary.db_user} target_session_attrs=read-write")}
        return overrides

    def links(self, daemon: str, service: str) -> list[TcpProxy]:
        """The proxies between `daemon` and every node of `service` (zookeeper, rabbitmq,
        postgres)."""
        prefix = SERVICES[service]
        return [p for n, p in self.proxies[daemon].items() if n.startswith(prefix)]

    def cut(self, daemon: str, service: str, how: str = "blackhole") -> None:
        """Cut `daemon` off `service`: blackhole (silence) or drop (resets)."""
        for proxy in self.links(daemon, service):
            getattr(proxy, how)()

    def mend(self, daemon: str) -> None:
        """Heal every link of `daemon`."""
        for proxy in self.proxies[daemon].values():
            proxy.heal()

    # -- the workload ----------------------------------------------------------------------
    @contextmanager
    def workload(self, *, steady: bool = True) -> Iterator[Workload]:
        """A started workload (without standing jobs and feeder unless `steady`), stopped
        when the block ends."""
        load = Workload(self.db, self.ledger)
        load.start(steady=steady)
        try:
            yield load
        finally:
            if load.ended is None:
                load.stop()

    def verdict(self, title: str, load: Workload, faults: Faults, *,
                settle_timeout: float = 45.0, extra: str = "") -> Report:
        """Wait until the window settles, check it, print the figures; returns the report."""
        end: datetime = load.ended or load.stop()
        report, waited = settle(self.db, self.ledger, end, faults, phase(settle_timeout))
        line = (f"{title}: {report.figures()}; settled {waited:.1f} s after the workload"
                f"{'; ' + extra if extra else ''}")
        if load.creation_errors:
            line += f"; {len(load.creation_errors)} job creations refused"
        self.figures.append(line)
        print("\n" + line)
        for problem in report.problems()[:40]:
            print("  " + problem)
        return report


def _enable_feature_flags(cluster: LocalCluster) -> None:
    """Work around a race of the harness's RabbitMQ start: when a peer joins the first node
    while that node is still initialising, the cluster keeps every feature flag disabled and
    no quorum queue can be declared. Enabling them all is a no-op on a healthy cluster."""
    rabbit = [n for n in cluster.nodes.values() if isinstance(n, RabbitNode)]
    flags = rabbit[0].ctl("list_feature_flags", "name", "state", "--quiet",
                          "--no-table-headers") or ""
    if "quorum_queue\tenabled" not in flags:
        _log.warning("RabbitMQ feature flags left disabled by cluster formation; enabling")
        if rabbit[0].ctl("enable_feature_flag", "all") is None:
            raise AssertionError("cannot enable RabbitMQ's feature flags")


def busiest_worker(env: FaultEnv, running: int = 2) -> Daemon:
    """Wait for a worker with at least `running` attempts in flight; returns it."""
    def busy() -> Daemon | None:
        for daemon in env.stack.workers:
            if int((daemon.health() or {}).get("running", 0)) >= running:
                return daemon
        return None
    found: Daemon = wait_for(busy, 20, f"a worker with {running} attempts running")
    return found


def assert_clean(report: Report, *, min_runs: int = 50) -> None:
    """The acceptance: nothing lost, doubled, overlapping, stuck or inconsistent."""
    assert report.runs_checked >= min_runs, f"only {report.runs_checked} runs checked"
    problems = report.problems()
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:40])
