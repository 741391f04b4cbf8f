"""How much work each benchmark does in each mode (pure values).

`full` is the issue's sizes; `default` keeps `make bench` near ten minutes on a 2-CPU
machine; `quick` is a smoke run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    """The sizes of one mode."""

    mode: str
    raw_messages: int
    python_jobs: int            # end to end, each RabbitMQ layout
    shell_jobs: int
    lateness: tuple[tuple[float, float], ...]  # (runs per second, seconds) per run
    cron_jobs: int              # many schedules: jobs firing every minute...
    cron_minutes: int           # ...for this long
    memory_jobs: int            # jobs in the database while the leader's RSS is sampled
    memory_seconds: float       # how long it is sampled once they are in
    idle_seconds: float         # RSS sampling of an idle cluster
    failover_trials: int        # per signal (SIGKILL, SIGTERM)
    peer_tasks: int             # Celery's end-to-end run (no-op tasks)
    periodic_seconds: float     # the 1-s periodic job, Zeitplan's and Celery's
    profile_jobs: int           # the python batch profiled with py-spy
    outage_trials: int          # RabbitMQ node kills (the PostgreSQL failover is done once)

    @property
    def cron_fires_per_s(self) -> float:
        """The average fire rate of the many-schedules benchmark."""
        return self.cron_jobs / 60.0


SIZES = {
    "quick": Sizes("quick", raw_messages=5_000, python_jobs=500, shell_jobs=200,
                   lateness=((10.0, 10.0), (100.0, 5.0), (1000.0, 3.0)),
                   cron_jobs=2_000, cron_minutes=1, memory_jobs=20_000, memory_seconds=10.0,
                   idle_seconds=5.0, failover_trials=1, peer_tasks=500, periodic_seconds=10.0,
                   profile_jobs=500, outage_trials=1),
    "default": Sizes("default", raw_messages=50_000, python_jobs=5_000, shell_jobs=1_000,
                     lateness=((10.0, 30.0), (100.0, 20.0), (1000.0, 10.0)),
                     cron_jobs=10_000, cron_minutes=2, memory_jobs=100_000,
                     memory_seconds=30.0, idle_seconds=10.0, failover_trials=3,
                     peer_tasks=5_000, periodic_seconds=30.0, profile_jobs=5_000,
                     outage_trials=1),
    "full": Sizes("full", raw_messages=200_000, python_jobs=50_000, shell_jobs=5_000,
                  lateness=((10.0, 120.0), (100.0, 60.0), (1000.0, 30.0)),
                  cron_jobs=100_000, cron_minutes=5, memory_jobs=1_000_000,
                  memory_seconds=60.0, idle_seconds=10.0, failover_trials=10,
                  peer_tasks=50_000, periodic_seconds=60.0, profile_jobs=10_000,
                  outage_trials=3),
}
