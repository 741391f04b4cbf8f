"""The local cluster harness against the real services it starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pika
import psycopg
import pytest
from kazoo.client import KazooClient
from kazoo.retry import KazooRetry

from common.devcluster import LocalCluster, ManagedProcess, procfs
from common.devcluster.node import wait_for
from common.devcluster.zookeeper import server_mode
from common.errors import HarnessError

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FreshCluster = Callable[..., LocalCluster]

# A cluster owner in its own interpreter: prints its processes' pids, then idles.
OWNER_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from common.devcluster import LocalCluster
    cluster = LocalCluster(Path(sys.argv[1]), zk_nodes=1, rabbit_nodes=0, pg_standby=False)
    cluster.start()
    print(json.dumps([row["pid"] for row in cluster.status()]), flush=True)
    while True:
        time.sleep(1)
""")


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def process_state(pid: int) -> str:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2]


def descendants(roots: set[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                raw = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(raw[raw.rindex(")") + 2:].split()[1]), []).append(int(entry))
    found, todo = set(roots), list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return {pid for pid in found if procfs.is_alive(pid)}


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def get_one(url: str, queue: str, timeout: float) -> bytes:
    """Poll `queue` on the node at `url` until a message arrives; ack it and return its body."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with pika.BlockingConnection(pika.URLParameters(url)) as connection:
                channel = connection.channel()
                method, _, body = channel.basic_get(queue)
                if method is not None:
                    channel.basic_ack(method.delivery_tag)
                    return bytes(body)
        except pika.exceptions.AMQPError:
            pass  # the queue may be electing a new leader
        assert time.monotonic() < deadline, f"no message on {queue} at {url}"
        time.sleep(0.2)


def start_owner(state: Path) -> tuple[subprocess.Popen[str], set[int], set[int]]:
    """The owner process, the main pids of its cluster, and those with their descendants."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER_SCRIPT, str(state)], cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)},
                             stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    line = owner.stdout.readline()
    assert line, f"the owner exited with {owner.wait()} before its cluster was ready"
    main_pids = set(json.loads(line))
    return owner, main_pids, descendants(main_pids)


@pytest.mark.timeout(30)
def test_a_node_that_dies_while_starting_fails_naming_it_and_quoting_its_log(
        tmp_path: Path) -> None:
    log = tmp_path / "doomed.log"
    doomed = ManagedProcess("doomed", ["sh", "-c", "echo cannot bind port; exit 3"], env=None,
                            cwd=None, log_path=log)
    doomed.start()
    with pytest.raises(HarnessError) as failure:
        wait_for(lambda: False, 20, name="doomed", log_path=log, what="ready", process=doomed)
    assert str(failure.value).startswith("doomed: exited with status 3")
    assert str(log) in str(failure.value) and "cannot bind port" in str(failure.value)


@pytest.mark.timeout(120)
def test_promoting_the_standby_makes_the_multi_host_dsn_follow_it(
        fresh_cluster: FreshCluster) -> None:
    private = fresh_cluster(zk_nodes=0, rabbit_nodes=0)
    settings = private.settings
    assert settings.zk_hosts == "" and settings.amqp_urls == ()
    standby_port = private.node("pg-standby").ports["pg"]
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE runs (id int PRIMARY KEY)")
        conn.execute("INSERT INTO runs VALUES (1)")
    private.node("pg-primary").stop()
    private.promote_standby()
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT inet_server_port()").fetchone() == (standby_port,)
        conn.execute("INSERT INTO runs VALUES (2)")
        assert conn.execute("SELECT id FROM runs ORDER BY id").fetchall() == [(1,), (2,)]


@pytest.mark.timeout(180)
def test_stop_leaves_no_process_behind(fresh_cluster: FreshCluster) -> None:
    private = fresh_cluster()
    pids = descendants({int(str(row["pid"])) for row in private.status()})
    assert {"beam.smp", "epmd", "java", "postgres"} <= {command_name(pid) for pid in pids}
    private.stop()
    assert {pid: command_name(pid) for pid in pids if procfs.is_alive(pid)} == {}


@pytest.mark.timeout(120)
def test_a_sigterm_to_the_owner_stops_its_cluster_and_still_terminates_it(
        state_dir: Path) -> None:
    owner, _, pids = start_owner(state_dir)
    owner.send_signal(signal.SIGTERM)
    assert owner.wait(60) == -signal.SIGTERM
    assert {pid: command_name(pid) for pid in pids if procfs.is_alive(pid)} == {}


@pytest.mark.timeout(120)
def test_starting_in_the_state_dir_of_a_crashed_run_kills_its_leftovers(
        state_dir: Path) -> None:
    owner, main_pids, pids = start_owner(state_dir)
    owner.kill()
    owner.wait()
    assert all(procfs.is_alive(pid) for pid in main_pids)
    messages: list[str] = []
    with LocalCluster(state_dir, zk_nodes=1, rabbit_nodes=0, pg_standby=False,
                      progress=messages.append):
        assert {pid: command_name(pid) for pid in pids if procfs.is_alive(pid)} == {}
    assert any(message.startswith("killed leftovers") for message in messages)


@pytest.mark.timeout(180)
def test_a_row_committed_on_the_primary_is_on_the_standby(cluster: LocalCluster) -> None:
    table = f"t_{uuid.uuid4().hex}"
    with psycopg.connect(cluster.settings.pg_primary_dsn, autocommit=True) as primary:
        primary.execute(f"CREATE TABLE {table} (note text)")
        primary.execute(f"INSERT INTO {table} VALUES ('replicated')")
    with psycopg.connect(cluster.settings.pg_standby_dsn, autocommit=True) as standby:
        assert standby.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)

        def visible() -> bool:
            exists = standby.execute("SELECT to_regclass(%s)", (table,)).fetchone()
            return bool(exists and exists[0]) and standby.execute(
                f"SELECT note FROM {table}").fetchall() == [("replicated",)]

        wait_until(visible, 10, "the row is on the standby")


@pytest.mark.timeout(180)
def test_stopping_one_zookeeper_node_keeps_the_ensemble_serving(cluster: LocalCluster) -> None:
    nodes = [cluster.node(name) for name in ("zk1", "zk2", "zk3")]
    leader = next(node for node in nodes if server_mode(node.ports["client"]) == "leader")
    client = KazooClient(hosts=cluster.settings.zk_hosts, timeout=10.0)
    client.start(timeout=15)
    retry = KazooRetry(max_tries=-1, max_delay=1.0, deadline=30.0)
    path = f"/devcluster-test/{uuid.uuid4().hex}"
    try:
        client.ensure_path(path)
        leader.stop()
        assert not leader.is_running()
        retry(client.set, path, b"written without the old leader")
        assert retry(client.get, path)[0] == b"written without the old leader"
        serving = [node for node in nodes if node is not leader and node.ready()]
        assert len(serving) == 2
    finally:
        leader.start()
        leader.wait_ready(60)
        client.stop()
        client.close()


@pytest.mark.timeout(240)
def test_a_confirmed_message_on_a_quorum_queue_survives_restarting_the_node_that_accepted_it(
        cluster: LocalCluster) -> None:
    accepting, other = cluster.node("rabbit1"), cluster.settings.amqp_urls[1]
    queue = f"devcluster-test-{uuid.uuid4().hex}"
    with pika.BlockingConnection(pika.URLParameters(cluster.settings.amqp_urls[0])) as conn:
        channel = conn.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        # With confirms on, this raises unless the broker confirmed the message.
        channel.basic_publish("", queue, b"survivor", pika.BasicProperties(delivery_mode=2),
                              mandatory=True)
    try:
        accepting.stop()
        assert get_one(other, queue, timeout=60) == b"survivor"
    finally:
        accepting.start()
        accepting.wait_ready(120)
    with pika.BlockingConnection(pika.URLParameters(other)) as conn:
        conn.channel().queue_delete(queue)


@pytest.mark.timeout(240)
def test_killing_and_pausing_a_node_is_visible_and_reversible(cluster: LocalCluster) -> None:
    zk = cluster.node("zk3")
    pid = zk.pid
    assert pid is not None
    zk.pause()
    try:
        assert zk.is_running() and process_state(pid) == "T"
        assert not zk.ready()
    finally:
        zk.resume()
    zk.wait_ready(30)
    zk.kill()
    assert not zk.is_running() and zk.pid is None and not procfs.is_alive(pid)
    assert {row["name"]: row["running"] for row in cluster.status()}["zk3"] is False
    zk.restart()
    zk.wait_ready(60)
    assert zk.pid not in (None, pid)

    rabbit = cluster.node("rabbit3")
    assert rabbit.process.pidfile is not None
    beam = int(rabbit.process.pidfile.read_text())
    assert command_name(beam) == "beam.smp"
    rabbit.pause()
    try:
        assert process_state(beam) == "T"
    finally:
        rabbit.resume()
    wait_until(lambda: process_state(beam) != "T", 5, "beam runs again")
    rabbit.kill()
    assert not procfs.is_alive(beam)
    rabbit.start()
    rabbit.wait_ready(120)
