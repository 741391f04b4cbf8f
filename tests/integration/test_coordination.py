"""The ZooKeeper adapter while its connection is down: calls that can be retried give up
within the session timeout (kazoo alone would wait for the reconnection), and a lock
release never waits, yet takes effect once the connection is back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from common.devcluster import LocalCluster
from common.devcluster.proxy import TcpProxy
from common.devcluster.zookeeper import ZooKeeperNode
from common.errors import CoordinationError
from common.zk import Coordinator
from tests.integration.support import wait_for

pytestmark = pytest.mark.timeout(120)
SESSION = 4.0


@pytest.fixture
def links(cluster: LocalCluster) -> Iterator[list[TcpProxy]]:
    """A proxy in front of each ZooKeeper node of the shared cluster."""
    proxies = [TcpProxy(node.ports["client"], name=f"test->{node.name}")
               for node in cluster.nodes.values() if isinstance(node, ZooKeeperNode)]
    yield proxies
    for proxy in proxies:
        proxy.close()


def coordinator(hosts: str, name: str) -> Coordinator:
    coord = Coordinator(hosts, root="/zeitplan-adapter-test", session_timeout=SESSION,
                        name=name)
    coord.start()
    return coord


def cut(links: list[TcpProxy]) -> None:
    for proxy in links:
        proxy.drop()


def heal(links: list[TcpProxy]) -> None:
    for proxy in links:
        proxy.heal()


def timed(call: Callable[[], object]) -> tuple[float, object]:
    began = time.monotonic()
    try:
        result = call()
    except CoordinationError as exc:
        result = exc
    return time.monotonic() - began, result


def test_calls_give_up_within_the_session_timeout_while_zookeeper_is_unreachable(
        links: list[TcpProxy]) -> None:
    coord = coordinator(",".join(p.address for p in links), "cut-off")
    try:
        coord.register("testers", {"n": 1})
        cut(links)
        wait_for(lambda: not coord.lease_valid(), 10, "the client to notice")
        took, result = timed(lambda: coord.register("testers", {"n": 2}))
        assert isinstance(result, CoordinationError) and took < SESSION + 1.0
        took, result = timed(lambda: coord.members("testers"))
        assert isinstance(result, CoordinationError) and took < SESSION + 1.0
        took, result = timed(coord.touch)
        assert result is False and took < SESSION / 3 + 1.0
        heal(links)
        # The cut outlived the session: the new one registers the latest data again.
        wait_for(coord.touch, 20, "the client to reconnect")
        wait_for(lambda: coord.members("testers").get("cut-off") == {"n": 2}, 20,
                 "the latest registration to be in place once connected again")
    finally:
        heal(links)
        coord.stop()


def test_a_lock_release_does_not_wait_for_zookeeper_and_applies_when_it_is_back(
        cluster: LocalCluster, links: list[TcpProxy]) -> None:
    holder = coordinator(",".join(p.address for p in links), "holder")
    observer = coordinator(cluster.settings.zk_hosts, "observer")
    try:
        assert holder.try_lock("job-1", {"run_id": 1})
        cut(links)
        wait_for(lambda: not holder.lease_valid(), 10, "the client to notice")
        took, _ = timed(lambda: holder.release("job-1"))
        assert took < 0.5
        assert observer.holder("job-1") == {"run_id": 1}  # not applied yet: cut off
        heal(links)
        wait_for(lambda: observer.holder("job-1") is None, 10,
                 "the release to reach ZooKeeper")
        assert holder.session_id is not None and holder.try_lock("job-1", {"run_id": 2})
    finally:
        heal(links)
        holder.stop()
        observer.stop()
