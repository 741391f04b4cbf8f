"""schedulerd's configuration (see configs/schedulerd.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field

from common.config import required
from common.sections import BrokerSection, HttpSection, LogSection, NodeSection, ZooKeeperSection

CONFIRM_WAIT = 10.0  # seconds the leader waits for a window's confirms (BatchPublisher)


@dataclass(frozen=True)
class DatabaseSection:
    """PostgreSQL: a libpq DSN; list every host with target_session_attrs=read-write."""

    dsn: str = required()
    pool_size: int = 4
    # Lead although commits are not replicated synchronously: a failover may then lose the
    # last claims (a run executes twice) and outcomes. See docs/ARCHITECTURE.md.
    allow_async_replication: bool = False


@dataclass(frozen=True)
class LeaderSection:
    """The leader's timing and batch sizes."""

    lookahead: float = 5.0          # materialise fire times this far ahead (seconds)
    poll_interval: float = 0.5      # materialise and refill this often; longest sleep
    dispatch_ahead: float = 0.25    # publish runs this early; workers hold them until due
    batch: int = 500                # runs per dispatch transaction
    runs_per_message: int = 10      # runs of one queue published together in one message
    stale_after: float = 60.0       # no heartbeat this long: lost, if membership is unknown
    lost_after: float = 10.0        # no heartbeat this long and its worker left ZooKeeper
    orphan_grace: float = 10.0      # a term's wait before re-publishing older terms'
                                    # unconfirmed runs (at least the 10 s confirm wait)
    pools: tuple[str, ...] = ("default",)

    def __post_init__(self) -> None:
        if not 0.5 <= self.lookahead <= 300:
            raise ValueError("'leader.lookahead' must be between 0.5 and 300 seconds")
        if not 0.01 <= self.poll_interval <= 10:
            raise ValueError("'leader.poll_interval' must be between 0.01 and 10 seconds")
        if not 0 <= self.dispatch_ahead <= 1:
            raise ValueError("'leader.dispatch_ahead' must be between 0 and 1 second")
        if self.batch < 1:
            raise ValueError("'leader.batch' must be at least 1")
        if not 1 <= self.runs_per_message <= 100:
            raise ValueError("'leader.runs_per_message' must be between 1 and 100")
        if self.stale_after <= 0:
            raise ValueError("'leader.stale_after' must be positive")
        if not 0 < self.lost_after <= self.stale_after:
            raise ValueError("'leader.lost_after' must be positive and at most stale_after")
        if self.orphan_grace < CONFIRM_WAIT:
            # A deposed leader may wait this long for the confirms of a window it sent.
            raise ValueError(f"'leader.orphan_grace' must be at least {CONFIRM_WAIT:g} "
                             "seconds (the confirm wait of a window)")

    @property
    def refill_reach(self) -> float:
        """Seconds ahead the dispatch loop loads runs into its timer heap: what it may have
        to dispatch before the next refill (due within a poll interval, dispatched
        `dispatch_ahead` early), with another poll interval for a slow cycle. Not the whole
        `lookahead`: every refill reads again the runs it already holds, which at 1,000
        runs/s made each run be read ten times and a refill take 0.1 s of the loop."""
        return min(self.lookahead, 2 * self.poll_interval + self.dispatch_ahead)


@dataclass(frozen=True)
class StatusSection:
    """The status consumer."""

    batch: int = 500
    flush_interval: float = 0.05


@dataclass(frozen=True)
class RetentionSection:
    """How long finished runs and their output are kept (days)."""

    runs_days: float = 90.0
    logs_days: float = 30.0
    interval: float = 300.0         # seconds between pruning passes (on the leader)

    def __post_init__(self) -> None:
        if self.runs_days <= 0 or self.logs_days <= 0 or self.interval <= 0:
            raise ValueError("'retention' values must be positive")


@dataclass(frozen=True)
class SchedulerConfig:
    """Everything schedulerd reads at start."""

    node: NodeSection = field(default_factory=NodeSection)
    database: DatabaseSection = field(default_factory=DatabaseSection)
    zookeeper: ZooKeeperSection = field(default_factory=ZooKeeperSection)
    broker: BrokerSection = field(default_factory=BrokerSection)
    leader: LeaderSection = field(default_factory=LeaderSection)
    status: StatusSection = field(default_factory=StatusSection)
    retention: RetentionSection = field(default_factory=RetentionSection)
    http: HttpSection = field(default_factory=HttpSection)
    log: LogSection = field(default_factory=LogSection)
