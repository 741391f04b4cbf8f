"""The lifecycle's pure parts: which loops count as stalled, what /health says, how a reload
merges a new config into the running one, the log level changed at run time, and which
PostgreSQL settings make a commit survive a failover."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import structlog

from common import config, logs
from common.daemon import Lifecycle, reload_config
from common.db.replication import Replication
from schedulerd.config import SchedulerConfig

BASE = """
[database]
dsn = "host=db1 dbname=zeitplan"
[zookeeper]
hosts = "zk1:2181"
[broker]
urls = ["amqp://mq1:5672/"]
"""


def test_a_loop_that_stopped_beating_makes_the_process_not_live_and_names_it() -> None:
    life = Lifecycle("test")
    life.stall_after = 0.05
    life.ready_reason = None
    life.beat("status intake")
    life.beat("leader")
    assert life.health() == (True, True, "ready")
    time.sleep(0.06)
    life.beat("status intake")
    assert life.stalled() == ["leader"]
    assert life.health() == (False, False, "leader loop stalled")
    life.forget("leader")  # a term that ended on purpose no longer counts
    assert life.health() == (True, True, "ready")


def test_a_held_reason_keeps_a_live_process_not_ready_and_says_why() -> None:
    life = Lifecycle("test")
    life.ready_reason = None
    life.held["replication"] = "refusing to lead: synchronous_standby_names is empty"
    assert life.health() == (True, False, "refusing to lead: synchronous_standby_names is empty")
    del life.held["replication"]
    life.ready_reason = "RabbitMQ unreachable"
    assert life.health() == (True, False, "RabbitMQ unreachable")


def test_changed_lists_the_dotted_keys_that_differ(tmp_path: Path) -> None:
    old = load(tmp_path, "")
    new = load(tmp_path, "[log]\nlevel = 'debug'\n[retention]\nruns_days = 7\n")
    assert config.changed(old, new) == ["retention.runs_days", "log.level"]


def test_merge_takes_only_the_reloadable_keys_and_sections(tmp_path: Path) -> None:
    old = load(tmp_path, "")
    new = load(tmp_path, "[log]\nlevel = 'debug'\nformat = 'json'\n[retention]\nruns_days = 7"
                         "\n[leader]\npools = ['a']\npoll_interval = 2.0\n")
    merged = config.merge(old, new, ("log.level", "retention", "leader.pools"))
    assert merged.log.level == "debug" and merged.log.format == old.log.format
    assert merged.retention == new.retention
    assert merged.leader.pools == ("a",) and merged.leader.poll_interval == 0.5


def test_a_reload_applies_the_safe_keys_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(BASE)
    running = config.load(SchedulerConfig, path)
    path.write_text(BASE + "[retention]\nlogs_days = 3\n[leader]\npoll_interval = 2.0\n")
    merged = reload_config(SchedulerConfig, path, running, ("retention",))
    assert merged is not None
    assert merged.retention.logs_days == 3 and merged.leader.poll_interval == 0.5
    path.write_text(BASE + "[retention]\nlogs_days = -1\n")
    assert reload_config(SchedulerConfig, path, running, ("retention",)) is None


def test_the_log_level_changes_for_loggers_already_in_use(capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    logs.configure("info", "json")
    try:
        log = structlog.get_logger("level-test")
        log.debug("hidden_before")
        log.info("shown_before")
        logs.set_level("debug")
        log.debug("shown_after")
        logs.set_level("warning")
        log.info("hidden_after")
        log.warning("shown_last")
    finally:
        logs.set_level("info")
        structlog.reset_defaults()
    err = capsys.readouterr().err
    assert "shown_before" in err and "shown_after" in err and "shown_last" in err
    assert "hidden_before" not in err and "hidden_after" not in err


@pytest.mark.parametrize(("commit", "names", "problem"), [
    ("on", "replica1", None),
    ("remote_apply", "FIRST 1 (a, b)", None),
    ("remote_write", "ANY 1 (a)", None),
    ("on", "", "synchronous_standby_names is empty"),
    ("on", "  ", "synchronous_standby_names is empty"),
    ("local", "replica1", "synchronous_commit is local"),
    ("off", "replica1", "synchronous_commit is off"),
])
def test_only_a_commit_that_waits_for_a_synchronous_standby_is_safe(
        commit: str, names: str, problem: str | None) -> None:
    found = Replication(commit, names).problem
    assert (found is None) if problem is None else (found is not None and problem in found)


def load(tmp_path: Path, extra: str) -> SchedulerConfig:
    path = tmp_path / "c.toml"
    path.write_text(BASE + extra)
    return config.load(SchedulerConfig, path)


