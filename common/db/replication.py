"""Whether PostgreSQL's commits survive a failover.

The leadership epoch, the claims of runs and their outcomes live in PostgreSQL. With
asynchronous replication, a standby promoted after the primary died can miss the last
commits: a lost claim runs a run twice, a lost outcome runs it again or forgets it. Only a
commit that waits for a synchronous standby (``synchronous_standby_names`` set and
``synchronous_commit`` at ``on``, ``remote_write`` or ``remote_apply``) is on two hosts.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.db import Connection

# synchronous_commit levels at which a commit waits for the synchronous standby
WAITS_FOR_STANDBY = ("on", "remote_write", "remote_apply")


@dataclass(frozen=True)
class Replication:
    """The settings of this connection's session that decide where a commit is durable."""

    synchronous_commit: str
    synchronous_standby_names: str

    @property
    def problem(self) -> str | None:
        """Why a commit acknowledged here may be missing after a failover (None: it is not)."""
        if not self.synchronous_standby_names.strip():
            return ("synchronous_standby_names is empty: commits are replicated "
                    "asynchronously, a failover can lose the last ones")
        if self.synchronous_commit not in WAITS_FOR_STANDBY:
            return (f"synchronous_commit is {self.synchronous_commit}: commits do not wait "
                    "for the synchronous standby, a failover can lose the last ones")
        return None


def settings(conn: Connection) -> Replication:
    """The replication settings in effect for this session (role and database settings and
    connection options included, as they are for the daemon's own transactions)."""
    row = conn.execute("SELECT current_setting('synchronous_commit') AS commit, "
                       "current_setting('synchronous_standby_names') AS names").fetchone()
    assert row is not None
    return Replication(row["commit"], row["names"])
