"""Which SQL DSN names a job may use is configured per pool (`[sql.pools]` in workerd.toml)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest

from common import config
from common.errors import ConfigError
from common.messages import RunMessage
from common.zk import Coordinator
from workerd.attempt import AttemptRunner
from workerd.config import WorkerConfig
from workerd.jobtypes import JobContext, JobType, Outcome, load_job_types
from workerd.outbox import Outbox

REPO = Path(__file__).resolve().parents[2]
WORKER_TOML = """
[zookeeper]
hosts = "zk1:2181"

[broker]
urls = ["amqp://rmq1:5672/"]

[sql.dsns]
ledger = "host=/nonexistent/ledger dbname=ledger"
reports = "host=/nonexistent/reports dbname=reports"

[sql.pools]
finance = "ledger, reports"
default = "reports"
"""


def worker_config(tmp_path: Path, text: str = WORKER_TOML) -> WorkerConfig:
    path = tmp_path / "workerd.toml"
    path.write_text(text, encoding="utf-8")
    return config.load(WorkerConfig, path, env={})


def sql_message(pool: str, dsn_name: str) -> RunMessage:
    return RunMessage(
        run_id=1, job_id=1, scheduled_for=datetime(2026, 1, 1, tzinfo=UTC), attempt=1,
        max_attempts=1, job_type="sql", payload={"dsn_name": dsn_name, "statement": "SELECT 1"},
        pool=pool, priority=5, concurrency="allow", timeout_s=5.0,
        backoff={"base": 1, "factor": 2, "cap": 60, "jitter": 0}, epoch=1,
    )  # fmt: skip


def execute(cfg: WorkerConfig, message: RunMessage, job_types: dict[str, JobType]) -> Outcome:
    runner = AttemptRunner(cfg, cast(Coordinator, None), Outbox(), job_types, threading.Event())
    return runner._execute(message, threading.Event())


class Capture:
    """A stand-in sql job type that keeps the context the runner gave it."""

    def __init__(self) -> None:
        self.ctx: JobContext | None = None

    def run(self, ctx: JobContext) -> Outcome:
        self.ctx = ctx
        return Outcome("succeeded")


def test_each_pool_gets_only_the_dsns_listed_for_it(tmp_path: Path) -> None:
    sql = worker_config(tmp_path).sql
    assert dict(sql.dsns_for("finance")) == {
        "ledger": "host=/nonexistent/ledger dbname=ledger",
        "reports": "host=/nonexistent/reports dbname=reports",
    }
    assert dict(sql.dsns_for("default")) == {"reports": "host=/nonexistent/reports dbname=reports"}
    assert dict(sql.dsns_for("batch")) == {}  # not listed: no DSN at all


def test_a_pool_naming_an_undefined_dsn_is_a_config_error_naming_key_and_file(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as caught:
        worker_config(tmp_path, WORKER_TOML.replace('"ledger, reports"', '"ledger, ledgr"'))
    assert caught.value.problems == [
        f"{tmp_path / 'workerd.toml'}: [sql] 'sql.pools.finance' names 'ledgr', which"
        " 'sql.dsns' does not define"
    ]


def test_the_runner_hands_a_job_the_dsns_of_its_own_pool(tmp_path: Path) -> None:
    capture = Capture()
    execute(worker_config(tmp_path), sql_message("default", "reports"), {"sql": capture})
    assert capture.ctx is not None and capture.ctx.pool == "default"
    assert dict(capture.ctx.sql_dsns) == {"reports": "host=/nonexistent/reports dbname=reports"}


@pytest.mark.parametrize(("pool", "allowed"), [("default", "'reports'"), ("batch", "none")])
def test_a_dsn_name_the_pool_may_not_use_is_refused_with_a_clear_report(
    tmp_path: Path, pool: str, allowed: str
) -> None:
    # 'ledger' is defined on this worker, but only the finance pool may use it; the
    # refusal comes before any connection (the DSNs here point nowhere).
    outcome = execute(worker_config(tmp_path), sql_message(pool, "ledger"), load_job_types())
    assert outcome == Outcome(
        "failed",
        error=f"DSN name 'ledger' is not allowed for pool {pool!r} on this worker"
        f" (its 'sql.pools' entry allows: {allowed})",
    )


def test_the_example_config_gives_its_dsn_to_the_default_pool() -> None:
    cfg = config.load(WorkerConfig, REPO / "configs" / "workerd.toml", env={})
    assert set(cfg.sql.dsns_for("default")) == {"reporting"}
