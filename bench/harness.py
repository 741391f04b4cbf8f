"""The benchmarks' environment: a LocalCluster with the Zeitplan daemons, always stopped."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from common.db import Database
from common.devcluster import LocalCluster, new_state_dir
from common.devstack import Stack

SCHEDULERS = 3
WORKERS = 2
# Slots per worker: a worker has at most that many attempts in hand, so one status publish
# carries at most that many runs' `running` reports (with the outcomes of as many), and on
# RabbitMQ a message costs about the same CPU whatever it carries. 50,000 no-op python runs,
# 2026-12-05: on 3 nodes 8 slots ~2,000 runs/s (0.39 broker publishes a run), 16 2,219
# (0.28), 32 3,205 (0.21), 64 3,090 (0.18); on 1 node 8 ~3,000, 32 4,743. Celery's peer gets
# the same number of threads per worker. Prefetch is workerd's default, 4 x slots.
WORKER_SLOTS = 32
SESSION_TIMEOUT = 6.0


class Bench:
    """The running cluster; `start_daemons()` adds 3 schedulers, 2 workers and a database
    pool (the raw broker benchmark runs before them, on a quiet cluster)."""

    def __init__(self, cluster: LocalCluster, progress: Callable[[str], None]) -> None:
        self.cluster = cluster
        self.progress = progress
        self._stack: Stack | None = None
        self._db: Database | None = None
        self.keep_state = False  # set when a benchmark failed: its logs are worth reading

    @property
    def stack(self) -> Stack:
        """The daemons, started on first use."""
        if self._stack is None:
            self.start_daemons()
        assert self._stack is not None
        return self._stack

    @property
    def db(self) -> Database:
        """A small pool on the cluster's database (starts the daemons first: they migrate)."""
        if self._db is None:
            self.start_daemons()
        assert self._db is not None
        return self._db

    def start_daemons(self) -> None:
        """Migrate, start the daemons and wait until they are healthy and one leads."""
        if self._stack is not None:
            return
        self._stack = Stack(self.cluster, self.cluster.state_dir, schedulers=SCHEDULERS,
                            workers=WORKERS, worker_slots=WORKER_SLOTS,
                            session_timeout=SESSION_TIMEOUT)
        self._stack.start(self.progress, timeout=90.0)
        self._db = Database(self.cluster.settings.pg_dsn, max_size=2, name="zeitplan-bench")

    def pids(self, kind: str | None = None) -> dict[str, int]:
        """Running daemons' pids by name (only schedulerd or workerd with `kind`)."""
        return {d.name: d.proc.pid for d in self.stack.daemons
                if d.proc.pid is not None and (kind is None or d.kind == kind)}

    def leader_name(self) -> str:
        """The leading scheduler's name (waits for one, at most 30 s)."""
        return self.stack.wait_leader(30.0).name

    def stop_daemons(self) -> None:
        """Stop Zeitplan's daemons (the peer runs without them); they are not restarted."""
        if self._stack is not None:
            self._stack.stop()

    def close(self) -> None:
        """Close the database pool (the cluster stops the daemons)."""
        if self._db is not None:
            self._db.close()
            self._db = None


@contextmanager
def environment(*, rabbit_nodes: int, progress: Callable[[str], None],
                keep: bool = False) -> Iterator[Bench]:
    """Start the cluster; stop everything on the way out, also on Ctrl-C. The state
    directory is removed unless `keep` or an error left logs worth reading."""
    state_dir = new_state_dir("zeitplan-bench-")
    progress(f"starting the local cluster in {state_dir}")
    cluster = LocalCluster(state_dir, rabbit_nodes=rabbit_nodes, progress=progress)
    bench = Bench(cluster, progress)
    failed = True
    try:
        cluster.start()
        yield bench
        failed = False
    finally:
        progress("stopping the local cluster")
        bench.close()
        cluster.stop()  # stops the daemons too (the stack added them to the cluster)
        if failed or keep or bench.keep_state:
            progress(f"kept state and logs: {state_dir}")
        else:
            shutil.rmtree(state_dir, ignore_errors=True)
