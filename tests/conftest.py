"""Shared by every test package: which tests failed (their clusters keep their state)."""

from __future__ import annotations

from collections.abc import Generator

import pytest

FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        item.stash[FAILED] = True
    return report


def failed(node: pytest.Item) -> bool:
    """True once any phase of this test failed (or a fixture marked it failed)."""
    return node.stash.get(FAILED, False)
