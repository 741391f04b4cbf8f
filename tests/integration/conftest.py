"""Real services for the integration tests, from the local cluster harness.

A service that cannot start fails the tests that need it; nothing is skipped. When a test
fails, the cluster's state directory (logs in ``<state>/logs``) is kept and its path printed.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from common.daemon import UNEXPECTED
from common.db import Database
from common.devcluster import LocalCluster, new_state_dir
from common.devstack import Stack
from tests.conftest import failed
from tests.integration.support import stack_fixture

_log = logging.getLogger("devcluster")


def _finish(cluster: LocalCluster, keep: bool, config: pytest.Config) -> None:
    cluster.stop()
    if keep:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        line = f"kept cluster state and logs: {cluster.state_dir}"
        if reporter is not None:
            reporter.write_line(line)
        else:
            print(line)
    else:
        shutil.rmtree(cluster.state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """The shared cluster: 3 ZooKeeper, PostgreSQL primary + sync standby, 3 RabbitMQ."""
    shared = LocalCluster(new_state_dir(), progress=_log.info)
    try:
        shared.start()
    except BaseException:
        _finish(shared, True, request.config)
        raise
    yield shared
    _finish(shared, request.session.testsfailed > 0, request.config)


@pytest.fixture
def fresh_cluster(request: pytest.FixtureRequest) -> Iterator[Callable[..., LocalCluster]]:
    """A factory of clusters private to one test (LocalCluster options as keywords)."""
    started: list[LocalCluster] = []

    def start(**options: Any) -> LocalCluster:
        private = LocalCluster(new_state_dir(), progress=_log.info, **options)
        started.append(private)
        private.start()
        return private

    yield start
    for private in started:
        _finish(private, failed(request.node), request.config)


@pytest.fixture
def state_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """An empty state directory, removed after the test unless it failed."""
    path = new_state_dir()
    yield path
    if not failed(request.node):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def stack(cluster: LocalCluster) -> Iterator[Stack]:
    """Zeitplan's daemons on the shared cluster: 3 schedulers, 2 workers (4 slots each)."""
    yield from stack_fixture(cluster)


@pytest.fixture
def db(stack: Stack) -> Iterator[Database]:
    """A connection pool on the stack's database."""
    pool = Database(stack.cluster.settings.pg_dsn, max_size=2, name="tests")
    yield pool
    pool.close()


@pytest.fixture(autouse=True)
def no_unexpected_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that used the daemons fails when any of them logged the phrase for a bug."""
    if "stack" not in request.fixturenames:
        yield
        return
    daemons: Stack = request.getfixturevalue("stack")
    sizes = {d.name: d.proc.log_path.stat().st_size for d in daemons.daemons}
    yield
    for daemon in daemons.daemons:
        with daemon.proc.log_path.open(errors="replace") as log:
            log.seek(sizes.get(daemon.name, 0))
            text = log.read()
        assert UNEXPECTED not in text, f"{daemon.name} logged a bug:\n{text[-3000:]}"
