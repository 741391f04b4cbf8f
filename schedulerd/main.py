"""schedulerd: serve health and metrics, consume status events, and lead when elected."""

from __future__ import annotations

import os
import threading

import structlog

from common import logs
from common.cli import daemon_config
from common.daemon import Lifecycle, connect_with_backoff, guarded, sd_notify
from common.db import Database
from common.errors import CoordinationError, ZeitplanError
from common.httpd import HttpServer, health_route, metrics_route
from common.zk import Coordinator
from schedulerd.config import SchedulerConfig
from schedulerd.dead_letters import DeadLetterConsumer
from schedulerd.leader import Term
from schedulerd.status_consumer import StatusConsumer

log = structlog.get_logger()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `schedulerd` command."""
    config = daemon_config(SchedulerConfig, "schedulerd", __doc__, argv)
    if config is None:
        return
    logs.configure(config.log.level, config.log.format)
    Scheduler(config).serve()


class Scheduler:
    """One schedulerd process."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.life = Lifecycle("schedulerd")
        self.role = "starting"
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
        self.http.start()
        log.info("schedulerd_starting", node=self.config.node.name, http_port=self.http.port)
        try:
            if not connect_with_backoff(self.coord.start, self.life, service="ZooKeeper",
                                        error=CoordinationError):
                return
            consumer = StatusConsumer(self.config, self.db, self.life)
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

    def _lead(self) -> None:
        sd_notify("STATUS=leader")
        term = Term(self.config, self.db, self.coord, self.life.stopping,
                    lambda line: self._leader_cycle(term, line))
        self._role(term)
        try:
            term.run()
        finally:
            self._role(None)
            sd_notify("STATUS=standby")

    def _leader_cycle(self, term: Term, line: str) -> None:
        self._role(term)
        self.life.status_line = line
        self.life.beat()
        log.debug("leader_cycle", summary=line)


def _pid() -> int:
    return os.getpid()


if __name__ == "__main__":
    main()
