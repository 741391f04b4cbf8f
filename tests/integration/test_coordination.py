"""The ZooKeeper adapter while its connection is down: calls that can be retried give up
within the session timeout (kazoo alone would wait for the reconnection), and a lock
release never waits, yet takes effect once the connection is back. Its locks under
session faults: a release never deletes another session's lock, a node this session
created unbeknown to it is its own lock, and the lock-risk listener runs in time."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from kazoo.client import KazooClient

from common.devcluster import LocalCluster
from common.devcluster.proxy import TcpProxy
from common.devcluster.zookeeper import ZooKeeperNode
from common.errors import CoordinationError
from common.messages import RunMessage
from common.zk import Coordinator
from tests.integration.support import wait_for
from workerd.overlap import admit

pytestmark = pytest.mark.timeout(120)
SESSION = 4.0
ROOT = "/zeitplan-adapter-test"


@pytest.fixture
def links(cluster: LocalCluster) -> Iterator[list[TcpProxy]]:
    """A proxy in front of each ZooKeeper node of the shared cluster."""
    proxies = [TcpProxy(node.ports["client"], name=f"test->{node.name}")
               for node in cluster.nodes.values() if isinstance(node, ZooKeeperNode)]
    yield proxies
    for proxy in proxies:
        proxy.close()


def coordinator(hosts: str, name: str) -> Coordinator:
    coord = Coordinator(hosts, root=ROOT, session_timeout=SESSION,
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


@contextmanager
def coordinators(hosts: str, *names: str) -> Iterator[list[Coordinator]]:
    """Started coordinators of the given names, stopped afterwards."""
    started = [coordinator(hosts, name) for name in names]
    try:
        yield started
    finally:
        for coord in started:
            coord.stop()


def expire(coord: Coordinator, hosts: str) -> None:
    """End `coord`'s session on the server for real: a second client takes the session
    over with its id and password, then closes it (kazoo's expire_session() only fakes)."""
    twin = KazooClient(hosts=hosts, client_id=coord._client.client_id)  # noqa: SLF001
    twin.start(timeout=10)
    twin.stop()
    twin.close()


def test_a_release_after_the_session_expired_leaves_the_next_holders_lock(
        cluster: LocalCluster) -> None:
    hosts = cluster.settings.zk_hosts
    with coordinators(hosts, "first", "second") as (first, second):
        assert first.try_lock("job-2", {"run_id": 1})
        old = first.session_id
        expire(first, hosts)
        wait_for(lambda: second.try_lock("job-2", {"run_id": 2}), 10,
                 "the lock to go with the expired session")
        wait_for(lambda: first.session_id not in (None, old) and first.touch(), 20,
                 "the first coordinator's new session")
        assert not first.holds("job-2")
        assert first.release("job-2").wait(5)  # the attempt under the lost lock ends
        # Read through the session that released: it sees its own delete, had it made one.
        assert (first.holder("job-2") or {}).get("run_id") == 2
        assert second.holds("job-2")


def test_a_lock_left_by_an_applied_create_of_this_session_is_taken_as_its_own(
        cluster: LocalCluster) -> None:
    message = RunMessage(
        run_id=5, job_id=3, scheduled_for=datetime.now(UTC), attempt=1, max_attempts=2,
        job_type="shell", payload={}, pool="default", priority=5, concurrency="forbid",
        timeout_s=None, backoff={"base": 1, "factor": 2, "cap": 60, "jitter": 0}, epoch=1)
    with coordinators(cluster.settings.zk_hosts, "worker-1", "worker-2") as (worker, other):
        # What a create leaves when ZooKeeper applied it but the connection lost its reply
        # (the attempt was given back; here its copy comes back): a node of this very
        # session that the adapter does not know it holds.
        worker._client.create(  # noqa: SLF001
            f"{ROOT}/locks/job-3", json.dumps({"run_id": 5, "attempt": 1,
                                               "worker": "worker-1"}).encode(),
            ephemeral=True)
        assert not other.try_lock("job-3", {"run_id": 6})  # to others it is held
        admission = admit(worker, message, "worker-1", threading.Event(),
                          lambda _cancel: None, 1.0)
        assert admission.admitted and not admission.duplicate
        assert admission.lock == "job-3" and worker.holds("job-3")
        assert worker.release("job-3").wait(5)
        assert other.try_lock("job-3", {"run_id": 6})


def test_the_lock_risk_listener_runs_a_grace_before_the_server_expires_the_session(
        cluster: LocalCluster, links: list[TcpProxy]) -> None:
    holder = coordinator(",".join(p.address for p in links), "holder")
    observer = coordinator(cluster.settings.zk_hosts, "observer")
    fired: list[float] = []
    holder.on_lock_risk(lambda: fired.append(time.monotonic()))
    try:
        assert holder.try_lock("job-4", {"run_id": 1})
        for proxy in links:
            proxy.blackhole()  # silence: kazoo notices only by its own read timeout
        wait_for(lambda: observer.holder("job-4") is None, 20,
                 "the server to expire the cut-off session", every=0.02)
        vanished = time.monotonic()
        assert len(fired) == 1, "the listener did not run while the session was cut off"
        assert fired[0] + holder.lock_grace < vanished
        assert not holder.holds("job-4")
        heal(links)
        wait_for(lambda: len(fired) == 2, 20, "the listener on the expiry's news")
        assert observer.try_lock("job-4", {"run_id": 2})
        assert holder.release("job-4").wait(5)
        assert observer.holds("job-4") and observer.holder("job-4") is not None
    finally:
        heal(links)
        holder.stop()
        observer.stop()
