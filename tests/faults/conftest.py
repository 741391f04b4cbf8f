"""Fault scenarios: each test builds its own cluster and daemons (faults damage state).

A failing test keeps its state directory (service logs in ``<state>/logs``, daemon logs in
``<state>/daemons``, the ledger in ``<state>/ledger``) and prints its path. Each scenario's
figures are repeated in a summary section at the end of the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from common.daemon import UNEXPECTED
from common.devcluster import new_state_dir
from tests.conftest import FAILED, failed
from tests.faults.harness import FaultEnv
from tests.faults.workload import SCALE

_FIGURES: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Soak runs are longer: stretch the scenarios' time limit with them."""
    for item in items:
        marker = item.get_closest_marker("timeout")
        if marker is not None and SCALE != 1.0 and "tests/faults" in str(item.path):
            item.add_marker(pytest.mark.timeout(marker.args[0] * SCALE), append=False)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _FIGURES:
        terminalreporter.section("fault scenario figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture
def fault_envs(request: pytest.FixtureRequest) -> Iterator[list[FaultEnv]]:
    """The environments a test built; stopped afterwards, kept on disk if it failed."""
    envs: list[FaultEnv] = []
    yield envs
    keep = failed(request.node)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    for env in envs:
        _FIGURES.extend(env.figures)
        env.close(keep)
        if keep and reporter is not None:
            reporter.write_line(f"kept fault scenario state and logs: {env.dir}")


@pytest.fixture
def fault_env(fault_envs: list[FaultEnv]) -> Callable[..., FaultEnv]:
    """A factory: a started private cluster and stack (FaultEnv options as keywords)."""

    def start(**options: Any) -> FaultEnv:
        env = FaultEnv(new_state_dir("zeitplan-faults-"), **options)
        fault_envs.append(env)
        return env.start()

    return start


@pytest.fixture(autouse=True)
def no_unexpected_errors(request: pytest.FixtureRequest,
                         fault_envs: list[FaultEnv]) -> Iterator[None]:
    """A scenario fails when any daemon logged the phrase reserved for bugs."""
    yield
    for env in fault_envs:
        for daemon in env.stack.daemons:
            text = daemon.proc.log_path.read_text(errors="replace")
            if UNEXPECTED in text:
                request.node.stash[FAILED] = True
                at = text.index(UNEXPECTED)
                pytest.fail(f"{daemon.name} logged a bug:\n{text[max(0, at - 2000):at + 3000]}")
