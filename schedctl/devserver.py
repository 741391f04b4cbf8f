"""The process behind `schedctl dev up`: the local cluster, the daemons, demo jobs."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import jobops
from common.db import Database
from common.devcluster import LocalCluster
from common.devstack import Stack
from common.jobs import JobSpec

INFO_FILE = "stack.json"


def demo_jobs() -> list[JobSpec]:
    """The demo's jobs: a frequent cron, a failing job that retries then dead-letters, a long
    job to cancel, a forbid job and a python plug-in job."""
    return [
        JobSpec(name="heartbeat-every-5s", job_type="shell",
                payload={"command": "echo tick at $(date +%T) run $ZEITPLAN_RUN_ID"},
                schedule_kind="cron", schedule_expr="*/5 * * * * *"),
        JobSpec(name="flaky-fails-then-dead", job_type="shell",
                payload={"command": "echo trying >&2; exit 3"}, schedule_kind="every",
                schedule_expr="every 1 minute", max_attempts=3, backoff_base_s=2.0),
        JobSpec(name="long-job-cancel-me", job_type="shell",
                payload={"command": "for i in $(seq 600); do echo $i; sleep 1; done"},
                schedule_kind="now", schedule_expr="now"),
        JobSpec(name="forbid-overlap", job_type="shell", payload={"command": "sleep 12"},
                schedule_kind="every", schedule_expr="every 5 seconds", concurrency="forbid"),
        JobSpec(name="python-plugin", job_type="python",
                payload={"entry_point": "example.sleep_echo",
                         "args": {"message": "hello from a plug-in", "seconds": 0.5}},
                schedule_kind="every", schedule_expr="every 20 seconds"),
    ]


def serve(state_dir: Path, *, progress: Callable[[str], None], demo: bool,
          schedulers: int = 3, workers: int = 2,
          ready: Callable[[dict[str, Any]], None] | None = None,
          before_stop: Callable[[], None] | None = None) -> None:
    """Start everything, write `stack.json`, then wait for SIGTERM/SIGINT and stop it all."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    cluster = LocalCluster(state_dir, progress=progress)
    try:
        settings = cluster.start()
        stack = Stack(cluster, state_dir, schedulers=schedulers, workers=workers)
        stack.start(progress)
        if demo:
            db = Database(settings.pg_dsn, max_size=1, name="schedctl-demo")
            try:
                for spec in demo_jobs():
                    job, _ = jobops.create_job(db, spec, actor="demo")
                    progress(f"demo job {job['id']}: {job['name']}")
            finally:
                db.close()
        info = {"pid": os.getpid(), "state_dir": str(state_dir), "env": settings.as_env(),
                "services": cluster.status(), "daemons": stack.status()}
        (state_dir / INFO_FILE).write_text(json.dumps(info, indent=2, default=str))
        if ready:
            ready(info)
        stop.wait()
    finally:
        if before_stop:
            before_stop()
        progress("stopping every process")
        cluster.stop()
        (state_dir / INFO_FILE).unlink(missing_ok=True)
        progress("stopped")
