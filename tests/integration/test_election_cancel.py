"""A process contends for leadership term after term with one election-cancel watcher
thread, and a stop still cancels the election it waits in."""

from __future__ import annotations

import functools
import threading
import uuid

import pytest
from kazoo.client import KazooClient

from common.devcluster import LocalCluster
from common.zk import Coordinator
from tests.integration.support import wait_for

pytestmark = pytest.mark.timeout(120)
TERMS = 25


def watchers() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "election-cancel")


def coordinator(cluster: LocalCluster, root: str, name: str) -> Coordinator:
    coord = Coordinator(cluster.settings.zk_hosts, root=root, session_timeout=4.0, name=name)
    coord.start()
    return coord


def test_many_terms_keep_one_election_cancel_watcher_per_process(
        cluster: LocalCluster) -> None:
    root = f"/election-test-{uuid.uuid4().hex[:8]}"
    coord = coordinator(cluster, root, "contender")
    stop = threading.Event()
    before = watchers()
    terms: list[int] = []
    try:
        for term in range(TERMS):
            coord.contend(functools.partial(terms.append, term), stop)
        assert terms == list(range(TERMS))
        assert watchers() - before == 1
    finally:
        stop.set()
        coord.stop()
    wait_for(lambda: watchers() == before, 10, "the watcher to end with the stop")


def contenders(cluster: LocalCluster, root: str) -> list[str]:
    reader = KazooClient(hosts=cluster.settings.zk_hosts)
    reader.start(timeout=10)
    try:
        return list(reader.Election(f"{root}/election").contenders())
    finally:
        reader.stop()
        reader.close()


def test_a_stop_cancels_the_election_a_standby_waits_in(cluster: LocalCluster) -> None:
    root = f"/election-test-{uuid.uuid4().hex[:8]}"
    leader, standby = coordinator(cluster, root, "leader"), coordinator(cluster, root, "standby")
    leading, release = threading.Event(), threading.Event()
    leader_stop, standby_stop = threading.Event(), threading.Event()

    def lead() -> None:
        leading.set()
        release.wait(30)

    led: list[str] = []
    first = threading.Thread(target=leader.contend, args=(lead, leader_stop))
    first.start()
    try:
        wait_for(leading.is_set, 10, "the first contender to lead")
        waiting = threading.Thread(target=standby.contend,
                                   args=(lambda: led.append("standby"), standby_stop))
        waiting.start()
        wait_for(lambda: len(contenders(cluster, root)) == 2, 10,
                 "both contenders to be in the election")
        standby_stop.set()
        waiting.join(10)
        assert not waiting.is_alive() and led == []
    finally:
        release.set()
        leader_stop.set()
        first.join(10)
        leader.stop()
        standby.stop()
