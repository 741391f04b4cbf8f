"""Configuration sections shared by the daemons (see common.config for the loader)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from common.config import required


@dataclass(frozen=True)
class NodeSection:
    """Who this process is."""

    name: str = field(default_factory=socket.gethostname)


@dataclass(frozen=True)
class ZooKeeperSection:
    """The ZooKeeper ensemble."""

    hosts: str = required()
    session_timeout: float = 6.0
    root: str = "/zeitplan"

    def __post_init__(self) -> None:
        if self.hosts is not None and not self.hosts.strip():
            raise ValueError("'zookeeper.hosts' must not be empty")
        if not 1.0 <= self.session_timeout <= 60.0:
            raise ValueError("'zookeeper.session_timeout' must be between 1 and 60 seconds")
        if not self.root.startswith("/") or self.root.endswith("/"):
            raise ValueError("'zookeeper.root' must start with '/' and not end with it")


@dataclass(frozen=True)
class BrokerSection:
    """The RabbitMQ cluster: one AMQP URL per node, tried in order."""

    urls: tuple[str, ...] = required()
    heartbeat: int = 10
    confirm_window: int = 500

    def __post_init__(self) -> None:
        if self.urls is not None:
            if not self.urls:
                raise ValueError("'broker.urls' must name at least one node")
            bad = [u for u in self.urls if not u.startswith(("amqp://", "amqps://"))]
            if bad:
                raise ValueError(f"'broker.urls' entries must start with amqp:// ({bad[0]!r})")
        if self.confirm_window < 1:
            raise ValueError("'broker.confirm_window' must be at least 1")


@dataclass(frozen=True)
class HttpSection:
    """The health and metrics endpoint (and, on schedulers, the API)."""

    listen: str = "127.0.0.1:0"

    def __post_init__(self) -> None:
        host, _, port = self.listen.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"'http.listen' must be HOST:PORT, not {self.listen!r}")

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) to bind."""
        host, _, port = self.listen.rpartition(":")
        return host, int(port)


@dataclass(frozen=True)
class LogSection:
    """Logging: format auto (JSON without a terminal), json or console."""

    level: str = "info"
    format: str = "auto"

    def __post_init__(self) -> None:
        if self.level.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError("'log.level' must be debug, info, warning or error")
        if self.format not in ("auto", "json", "console"):
            raise ValueError("'log.format' must be auto, json or console")
