"""workerd: consume runs from the worker's pools, execute them, report every change."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import structlog

from common import logs
from common.broker_async import AsyncBroker
from common.cli import daemon_config
from common.daemon import Lifecycle, connect_with_backoff, guarded, reload_config, sd_notify
from common.errors import CoordinationError
from common.httpd import HttpServer, health_route, metrics_route
from common.zk import Coordinator
from workerd.attempt import AttemptRunner
from workerd.config import WorkerConfig
from workerd.epochs import Epochs
from workerd.executor import Executor
from workerd.jobtypes import load_job_types
from workerd.outbox import Outbox
from workerd.transport import Transport

log = structlog.get_logger()
# What a reload changes (the rest needs a restart): the slots at once, the pools with a
# new broker connection.
RELOADABLE = ("log.level", "worker.concurrency", "worker.pools")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `workerd` command."""
    loaded = daemon_config(WorkerConfig, "workerd", __doc__, argv)
    if loaded is None:
        return
    config, path = loaded
    logs.configure(config.log.level, config.log.format)
    Worker(config, path).serve()


class Worker:
    """One workerd process."""

    def __init__(self, config: WorkerConfig, path: Path | None = None) -> None:
        self.config = config
        self.path = path
        self.name = config.node.name
        self.life = Lifecycle("workerd")
        self.outbox = Outbox()
        self.coord = Coordinator(config.zookeeper.hosts, root=config.zookeeper.root,
                                 session_timeout=config.zookeeper.session_timeout,
                                 name=self.name)
        slots = config.worker.slots
        self.epochs = Epochs()  # the newest leadership epoch seen
        self.runner = AttemptRunner(config, self.coord, self.outbox, load_job_types(),
                                    self.life.stopping, epochs=self.epochs)
        self.coord.on_lock_risk(self.runner.fence)
        self.executor = Executor(self.runner, self.outbox, slots, epochs=self.epochs)
        self.transport = Transport(
            AsyncBroker(config.broker.urls, heartbeat=config.broker.heartbeat,
                        name=f"workerd-{self.name}"),
            self.outbox, config.worker.pools, config.worker.window, self.executor.submit,
            self.executor.cancel, self.executor.fill)
        self.executor.send = self.transport.send  # both on the broker thread
        self.executor.wake = self.outbox.nudge  # from the others: the broker thread fills
        self.exit_transport = threading.Event()
        self.http = HttpServer(config.http.address, {
            "/health": health_route(self.life.health, self._details),
            "/metrics": metrics_route})

    def _details(self) -> dict[str, object]:
        return {"node": self.name, "pid": os.getpid(), "pools": list(self.config.worker.pools),
                "slots": self.config.worker.slots, "running": len(self.executor.running()),
                "broker_connected": self.transport.broker.connected}

    def serve(self) -> None:
        """Run until SIGTERM, then drain and stop in order."""
        self.life.install_signals()
        self.life.supervise(self._reload)
        self.http.start()
        log.info("workerd_starting", node=self.name, http_port=self.http.port,
                 slots=self.config.worker.slots, pools=list(self.config.worker.pools))
        transport = threading.Thread(
            target=guarded(self.transport.run, self.exit_transport.is_set), name="broker")
        try:
            if not connect_with_backoff(self.coord.start, self.life, service="ZooKeeper",
                                        error=CoordinationError):
                return
            # Every durable cancellation is known before the first delivery is taken.
            if not connect_with_backoff(
                    lambda: self.coord.watch_cancel_marks(self.executor.marks_changed),
                    self.life, service="ZooKeeper", error=CoordinationError):
                return
            self.coord.watch_epoch(self.epochs.see)
            self.executor.start()
            transport.start()
            sd_notify("READY=1")
            self.life.run_cycles(self._cycle, on_error_delay=1.0)
            log.info("workerd_draining", running=len(self.executor.running()))
            sd_notify("STOPPING=1")
            self.transport.stop_consuming = True
            self.executor.drain(self.config.worker.drain_timeout)
        finally:
            self.exit_transport.set()
            if transport.is_alive():
                transport.join(timeout=15)
            self.coord.stop()
            self.http.stop()
            log.info("workerd_stopped", node=self.name)

    def _cycle(self) -> float:
        """Heartbeat: report running attempts, refresh the ZooKeeper registration."""
        self.executor.heartbeat(self.name)
        running = self.executor.running()
        self.life.status_line = f"worker: {len(running)} of {self.config.worker.slots} slots busy"
        self.life.ready_reason = None if self.transport.broker.connected \
            else "RabbitMQ unreachable"
        try:
            self.coord.register("workers", {
                "pid": os.getpid(), "pools": list(self.config.worker.pools),
                "slots": self.config.worker.slots, "http_port": self.http.port,
                "running": len(running)},
                # bounded by the heartbeat, so a ZooKeeper outage never holds heartbeats back
                timeout=self.config.worker.heartbeat_interval)
        except CoordinationError as exc:
            log.warning("registration_failed", error=str(exc))
            self.life.ready_reason = self.life.ready_reason or "ZooKeeper unreachable"
        return self.config.worker.heartbeat_interval


    def _reload(self) -> None:
        """SIGHUP: apply what can change safely (RELOADABLE)."""
        config = reload_config(WorkerConfig, self.path, self.config, RELOADABLE)
        if config is None:
            return
        if config.worker.slots != self.config.worker.slots:
            self.executor.resize(config.worker.slots)
        # Consumers and their prefetch are set up per connection: the next one takes these.
        self.transport.prefetch = config.worker.window
        self.transport.pools = config.worker.pools
        if config.worker.pools != self.config.worker.pools:
            # Reconnect now, as after a broken connection: attempts under way go on, their
            # deliveries go back and are settled by redelivery reports (see ARCHITECTURE).
            broker = self.transport.broker
            broker.call_threadsafe(lambda: broker.fail("worker.pools changed by a reload"))
        self.config = config


if __name__ == "__main__":
    main()
