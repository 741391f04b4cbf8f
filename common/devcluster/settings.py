"""What clients need to reach a running local cluster."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClusterSettings:
    """Connection settings of a started cluster ("" / () for a service not started)."""

    pg_dsn: str
    pg_primary_dsn: str
    pg_standby_dsn: str
    zk_hosts: str
    amqp_urls: tuple[str, ...]

    def as_env(self) -> dict[str, str]:
        """The ZEITPLAN_* environment variables the daemons read."""
        return {
            "ZEITPLAN_PG_DSN": self.pg_dsn,
            "ZEITPLAN_ZK_HOSTS": self.zk_hosts,
            "ZEITPLAN_AMQP_URLS": ",".join(self.amqp_urls),
        }
