"""schedulerd: serve health and metrics, consume status events, and lead when elected."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import structlog

from common import logs
from common.cli import daemon_config
from common.daemon import Lifecycle, connect_with_backoff, guarded, reload_config, sd_notify
from common.db import Database, replication
from common.errors import CoordinationError, DatabaseError, ZeitplanError
from common.httpd import HttpServer, health_route, metrics_route
from common.zk import Coordinator
from schedulerd.config import SchedulerConfig
from schedulerd.dead_letters import DeadLetterConsumer
from schedulerd.leader import Term
from schedulerd.status_consumer import INTAKE_LOOP, StatusConsumer

log = structlog.get_logger()
# What a reload changes (the rest needs a restart): retention at the term's next pruning
# pass, pools from the next term's publisher on.
RELOADABLE = ("log.level", "retention", "leader.pools")
REPLICATION_RECHECK = 2.0  # seconds between checks while leading is refused
LEADER_LOOP = "leader"


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `schedulerd` command."""
    loaded = daemon_config(SchedulerConfig, "schedulerd", __doc__, argv)
    if loaded is None:
        return
    config, path = loaded
    logs.configure(config.log.level, config.log.format)
    Scheduler(config, path).serve()


class Scheduler:
    """One schedulerd process."""

    def __init__(self, config: SchedulerConfig, path: Path | None = None) -> None:
        self.config = config
        self.path = path
        self.life = Lifecycle("schedulerd")
        self.role = "starting"
        self.term: Term | None = None
        self._accepted: str | None = None  # the replication risk last logged as accepted
        self.db = Database(config.database.dsn, max_size=config.database.pool_size,
                           name=f"schedulerd-{config.node.name}")
        self.coord = Coordinator(config.zookeeper.hosts, root=config.zookeeper.root,
                                 session_timeout=config.zookeeper.session_timeout,
                                 name=config.node.name)
        self.http = HttpServer(config.http.address, {
            "/health": health_route(self.life.health, self._details),
            "/metrics": metrics_route})

    def _details(self) -> dict[str, object]:
        return {"node": self.config.node.name, "role": self.role, "pid": _pid()}

    def _role(self, term: Term | None) -> None:
        """'leader' only while the term may act; a leader that lost its lease says so."""
        self.role = "standby" if term is None else (
            "leader" if term.acting else "leader (holding: ZooKeeper unreachable)")

    def serve(self) -> None:
        """Run until SIGTERM: start, contend for leadership, shut down in order."""
        self.life.install_signals()
        self.life.supervise(self._reload)
        self.http.start()
        log.info("schedulerd_starting", node=self.config.node.name, http_port=self.http.port)
        try:
            if not connect_with_backoff(self.coord.start, self.life, service="ZooKeeper",
                                        error=CoordinationError):
                return
            consumer = StatusConsumer(self.config, self.db, self.life)
            self.life.beat(INTAKE_LOOP)
            threading.Thread(target=guarded(consumer.run), daemon=True,
                             name="status-consumer").start()
            letters = DeadLetterConsumer(self.config, self.db, self.life)
            threading.Thread(target=guarded(letters.run), daemon=True,
                             name="dead-letter-consumer").start()
            self.coord.register("schedulers", {"http_port": self.http.port, "pid": _pid()})
            self.role = "standby"
            sd_notify("READY=1", "STATUS=standby")
            log.info("schedulerd_ready", node=self.config.node.name, http_port=self.http.port)
            while not self.life.stopping.is_set():
                if not self._may_lead():  # checked again before every election
                    self.life.sleep(REPLICATION_RECHECK)
                    continue
                try:
                    self.coord.contend(self._lead, self.life.stopping)
                except ZeitplanError as exc:
                    log.warning("election_failed", error=str(exc))
                    self.life.sleep(1.0)
        finally:
            sd_notify("STOPPING=1")
            log.info("schedulerd_stopping", node=self.config.node.name)
            self.coord.stop()
            self.http.stop()
            self.db.close()

    def _may_lead(self) -> bool:
        """Whether PostgreSQL's commits survive a failover (or the risk is accepted): the
        epoch, claims and outcomes of a term must not be lost with an asynchronous primary.
        False, with the reason in /health, when they may be or when it cannot be told."""
        try:
            with self.db.transaction() as conn:
                problem = replication.settings(conn).problem
        except DatabaseError as exc:  # /health says so already (the status intake's reason)
            log.warning("replication_check_failed", error=str(exc))
            return False
        if problem is None or self.config.database.allow_async_replication:
            if problem is not None and problem != self._accepted:
                log.warning("replication_risk_accepted", problem=problem,
                            setting="database.allow_async_replication")
            self._accepted = problem
            self.life.held.pop("replication", None)
            return True
        reason = f"refusing to lead: {problem}"
        if self.life.held.get("replication") != reason:
            log.error("replication_unsafe", problem=problem, refusing="leadership",
                      accept_with="database.allow_async_replication = true")
        self.life.held["replication"] = reason
        return False

    def _lead(self) -> None:
        if not self._may_lead():  # settings changed while this node waited in the election
            return
        sd_notify("STATUS=leader")
        term = Term(self.config, self.db, self.coord, self.life.stopping,
                    lambda line: self._leader_cycle(term, line))
        self._role(term)
        self.term = term
        try:
            term.run()
        finally:
            self.term = None
            self.life.forget(LEADER_LOOP)
            self._role(None)
            sd_notify("STATUS=standby")

    def _leader_cycle(self, term: Term, line: str) -> None:
        self._role(term)
        self.life.status_line = line
        self.life.beat(LEADER_LOOP)  # a hung dispatch loop stops the watchdog
        log.debug("leader_cycle", summary=line)

    def _reload(self) -> None:
        """SIGHUP: apply what can change safely (RELOADABLE); the term under way takes the
        new retention at its next pruning pass."""
        config = reload_config(SchedulerConfig, self.path, self.config, RELOADABLE)
        if config is None:
            return
        self.config = config
        term = self.term
        if term is not None:
            term.config = config


def _pid() -> int:
    return os.getpid()


if __name__ == "__main__":
    main()
