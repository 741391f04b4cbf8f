"""workerd's configuration (see configs/workerd.toml). Workers hold no database credentials
of Zeitplan's own: only the DSNs their SQL jobs may use, by name, and per pool which."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from common.sections import BrokerSection, HttpSection, LogSection, NodeSection, ZooKeeperSection


@dataclass(frozen=True)
class WorkerSection:
    """How this worker takes and runs work."""

    pools: tuple[str, ...] = ("default",)
    concurrency: int = 0                # 0: the number of CPUs
    heartbeat_interval: float = 2.0
    drain_timeout: float = 30.0         # on SIGTERM, let running jobs finish this long
    kill_grace: float = 5.0             # SIGTERM -> SIGKILL on cancel or timeout
    output_limit: int = 1024 * 1024     # bytes kept per stream per attempt
    prefetch: int = 0                   # unacked deliveries per queue; 0 = 4 x slots

    def __post_init__(self) -> None:
        if not self.pools:
            raise ValueError("'worker.pools' must name at least one pool")
        if self.concurrency < 0 or self.concurrency > 1024:
            raise ValueError("'worker.concurrency' must be between 0 (CPU count) and 1024")
        if not 0.1 <= self.heartbeat_interval <= 60:
            raise ValueError("'worker.heartbeat_interval' must be between 0.1 and 60 seconds")
        if not 0 <= self.prefetch <= 10000:
            raise ValueError("'worker.prefetch' must be between 0 (4 x slots) and 10000")
        if self.drain_timeout < 0 or self.kill_grace < 0 or self.output_limit < 1024:
            raise ValueError("'worker.drain_timeout', 'kill_grace' must not be negative and "
                             "'output_limit' must be at least 1024")

    @property
    def slots(self) -> int:
        """Attempts run at once."""
        return self.concurrency or os.cpu_count() or 1

    @property
    def window(self) -> int:
        """Deliveries each queue may have unacknowledged here: enough to keep the slots
        busy while outcomes are reported (a delivery that never starts goes back)."""
        return self.prefetch or 4 * self.slots


@dataclass(frozen=True)
class SqlSection:
    """DSNs that SQL jobs may name (``dsn_name``), never Zeitplan's own database, and which
    of them the jobs of each pool may name (``pools``: pool -> comma-separated names)."""

    dsns: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    pools: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        for pool, names in self.pools.items():
            unknown = [name for name in _names(names) if name not in self.dsns]
            if unknown:
                raise ValueError(
                    f"'sql.pools.{pool}' names {unknown[0]!r}, which 'sql.dsns' does not define"
                )

    def dsns_for(self, pool: str) -> Mapping[str, str]:
        """The DSNs the jobs of `pool` may name: those `pools` lists for it (none if it is
        not listed, so a DSN is only ever reachable from the pools it was given to)."""
        return MappingProxyType({name: self.dsns[name] for name in _names(self.pools.get(pool))})


def _names(listed: str | None) -> list[str]:
    return [name.strip() for name in (listed or "").split(",") if name.strip()]


@dataclass(frozen=True)
class WorkerConfig:
    """Everything workerd reads at start."""

    node: NodeSection = field(default_factory=NodeSection)
    zookeeper: ZooKeeperSection = field(default_factory=ZooKeeperSection)
    broker: BrokerSection = field(default_factory=BrokerSection)
    worker: WorkerSection = field(default_factory=WorkerSection)
    sql: SqlSection = field(default_factory=SqlSection)
    http: HttpSection = field(default_factory=HttpSection)
    log: LogSection = field(default_factory=LogSection)
