"""The daemons' lifecycle as systemd sees it, through a real NOTIFY_SOCKET: SIGHUP reloads
what can change safely between RELOADING=1 and READY=1; a standby stays live and feeds the
watchdog while RabbitMQ is down; a hung leader loop stops the watchdog.

The cluster is private to this module (its RabbitMQ is stopped, its epoch row locked)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from common.db import Database
from common.db.migrate import migrate
from common.devcluster import LocalCluster, new_state_dir
from common.devstack import Daemon, Stack
from tests.integration.support import SESSION_TIMEOUT, create, runs, wait_for

pytestmark = pytest.mark.timeout(300)
WATCHDOG = 4.0  # seconds: WATCHDOG_USEC given to the daemons, so also their stall bound


class Notifications:
    """An AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="zpn-", dir="/tmp")  # short: sun_path is 108 bytes
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        # (monotonic time it was read, one state line): read often to time them well
        self.seen: list[tuple[float, str]] = []

    def read(self) -> list[tuple[float, str]]:
        """Everything received so far, one entry per state line."""
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return self.seen
            now = time.monotonic()
            self.seen.extend((now, line) for line in data.decode().splitlines())

    def since(self, began: float, state: str) -> list[float]:
        """When `state` (e.g. ``WATCHDOG=1``) arrived at or after `began`."""
        return [at for at, line in self.read() if at >= began and line == state]

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def notified_by(notify: Notifications) -> Iterator[None]:
    """Daemons started inside get `notify` as their NOTIFY_SOCKET and a WATCHDOG_USEC (only
    they: the services the cluster restarts later must not inherit them)."""
    saved = {k: os.environ.get(k) for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    os.environ["NOTIFY_SOCKET"] = notify.path
    os.environ["WATCHDOG_USEC"] = str(int(WATCHDOG * 1e6))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Site:
    """The module's cluster and daemons, each daemon with its own notify socket."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.stack = Stack(cluster, cluster.state_dir, schedulers=0, workers=0,
                           session_timeout=SESSION_TIMEOUT,
                           extra={"schedulerd": {"retention": {"interval": 1.0}},
                                  "workerd": {"worker": {"concurrency": 1}}})
        self.stack.dir.mkdir(parents=True, exist_ok=True)
        self.notify: dict[str, Notifications] = {}
        self.db = Database(cluster.settings.pg_dsn, max_size=2, name="tests-lifecycle")

    def add(self, kind: str, name: str) -> Daemon:
        self.notify[name] = Notifications()
        with notified_by(self.notify[name]):
            daemon = self.stack.add(kind, name)
        self.stack.wait_healthy(daemon, 60)
        return daemon

    def close(self) -> None:
        self.stack.stop()
        self.db.close()
        for notify in self.notify.values():
            notify.close()


@pytest.fixture(scope="module")
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    cluster = LocalCluster(new_state_dir(), zk_nodes=1, rabbit_nodes=1)
    cluster.start()
    migrate(cluster.settings.pg_dsn)
    here = Site(cluster)
    try:
        here.add("schedulerd", "sched-1")
        here.stack.wait_leader(30)
        here.add("schedulerd", "sched-2")
        here.add("workerd", "worker-1")
        yield here
    finally:
        here.close()
        cluster.stop()
        if request.session.testsfailed == 0:
            shutil.rmtree(cluster.state_dir, ignore_errors=True)


def daemon(site: Site, name: str) -> Daemon:
    return next(d for d in site.stack.daemons if d.name == name)


def edit(daemon: Daemon, old: str, new: str) -> None:
    text = daemon.config_path.read_text()
    assert old in text, f"{old!r} not in {daemon.name}'s config"
    daemon.config_path.write_text(text.replace(old, new, 1))


def log_after(daemon: Daemon, offset: int) -> str:
    with daemon.proc.log_path.open(errors="replace") as log:
        log.seek(offset)
        return log.read()


def reload(site: Site, target: Daemon) -> int:
    """SIGHUP `target`; wait for RELOADING=1 then READY=1. Returns its log offset before."""
    offset = target.proc.log_path.stat().st_size
    notify = site.notify[target.name]
    began = time.monotonic()
    assert target.proc.pid is not None
    os.kill(target.proc.pid, signal.SIGHUP)
    reloading = wait_for(lambda: notify.since(began, "RELOADING=1"), 10, "RELOADING=1")
    wait_for(lambda: notify.since(reloading[0], "READY=1"), 10, "READY=1 after RELOADING=1")
    return offset


def test_sighup_reloads_the_leaders_log_level_and_retention_between_reloading_and_ready(
        site: Site) -> None:
    leader = site.stack.wait_leader(30)
    job = create(site.db, "old-history", command="true", kind="at",
                 expr=(datetime.now(UTC) + timedelta(days=300)).isoformat())
    ten_days_ago = datetime.now(UTC) - timedelta(days=10)
    with site.db.transaction() as conn:
        conn.execute(
            "INSERT INTO runs (job_id, scheduled_for, due_at, state, priority, pool, epoch, "
            "finished_at) VALUES (%s, %s, %s, 'succeeded', 5, 'default', 0, %s)",
            (job["id"], ten_days_ago, ten_days_ago, ten_days_ago))
    assert len(runs(site.db, job["id"])) == 1  # kept 90 days by the running config
    assert '"leader_cycle"' not in leader.proc.log_path.read_text()  # a debug event
    edit(leader, 'format = "json"\n', 'format = "json"\nlevel = "debug"\n')
    edit(leader, "interval = 1.0\n", "interval = 1.0\nruns_days = 5\n")
    edit(leader, "[leader]\n", "[leader]\npoll_interval = 2.0\n")  # needs a restart
    offset = reload(site, leader)
    wait_for(lambda: '"leader_cycle"' in log_after(leader, offset), 10, "debug events")
    wait_for(lambda: not runs(site.db, job["id"]), 15, "the new retention to prune the run")
    text = log_after(leader, offset)
    assert "config_reloaded" in text and "retention.runs_days" in text
    assert "config_change_needs_restart" in text and "leader.poll_interval" in text
    assert leader.role() == "leader"
    edit(leader, 'level = "debug"\n', 'level = "info"\n')
    edit(leader, "interval = 1.0\nruns_days = 5\n", "interval = 1.0\n")
    edit(leader, "[leader]\npoll_interval = 2.0\n", "[leader]\n")
    offset = reload(site, leader)
    wait_for(lambda: "config_reloaded" in log_after(leader, offset), 10, "the second reload")


def test_sighup_gives_a_worker_more_slots_at_once(site: Site) -> None:
    worker = daemon(site, "worker-1")
    jobs = [create(site.db, f"slot-{n}", command="sleep 8") for n in range(2)]

    def running() -> int:
        return sum(1 for job in jobs for run in runs(site.db, job["id"])
                   if run["state"] == "running")

    wait_for(lambda: running() == 1, 20, "one slot's attempt to run")
    edit(worker, "concurrency = 1\n", "concurrency = 2\n")
    reload(site, worker)
    wait_for(lambda: running() == 2, 5, "both attempts to run at once")
    assert (worker.health() or {}).get("slots") == 2
    wait_for(lambda: all(runs(site.db, j["id"])[0]["state"] == "succeeded" for j in jobs), 30,
             "both runs to succeed")


def test_sighup_makes_a_worker_consume_a_new_pool(site: Site) -> None:
    worker = daemon(site, "worker-1")
    job = create(site.db, "in-a-new-pool", command="true", pool="reloaded")
    wait_for(lambda: runs(site.db, job["id"]) and runs(site.db, job["id"])[0]["state"]
             == "queued", 20, "the run to wait in its pool's queue")
    edit(worker, 'pools = ["default"]\n', 'pools = ["default", "reloaded"]\n')
    reload(site, worker)
    wait_for(lambda: runs(site.db, job["id"])[0]["state"] == "succeeded", 30,
             "the worker to run it")
    assert (worker.health() or {}).get("pools") == ["default", "reloaded"]


def test_a_standby_stays_live_and_feeds_the_watchdog_while_rabbitmq_is_down(
        site: Site) -> None:
    standby = next(d for d in site.stack.schedulers if d.role() == "standby")
    notify = site.notify[standby.name]
    rabbit = site.cluster.node("rabbit1")
    rabbit.stop()
    try:
        wait_for(lambda: "RabbitMQ unreachable" in str(standby.health()), 30,
                 "the standby to say RabbitMQ is unreachable")
        began = time.monotonic()
        while time.monotonic() - began < 3 * WATCHDOG:  # the outage lasts on
            doc = standby.health()
            assert doc is not None and doc["live"] is True, doc
            notify.read()  # stamps what arrived: read often
            time.sleep(0.5)
        beats = notify.since(began, "WATCHDOG=1")
        gaps = [b - a for a, b in zip([began, *beats], [*beats, time.monotonic()], strict=True)]
        assert max(gaps) < WATCHDOG, f"watchdog gaps {gaps}"
    finally:
        rabbit.start()
        rabbit.wait_ready(60)
    for each in site.stack.daemons:
        site.stack.wait_healthy(each, 60)


def waiting_for_a_lock(site: Site, daemon: Daemon) -> bool:
    with site.db.transaction() as conn:
        row = conn.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE "
                           "application_name = %s AND wait_event_type = 'Lock'",
                           (f"schedulerd-{daemon.name}",)).fetchone()
    return row is not None and row["n"] > 0


def test_a_hung_leader_loop_stops_feeding_the_watchdog_and_says_so(site: Site) -> None:
    leader = site.stack.wait_leader(30)
    notify = site.notify[leader.name]
    site.stack.wait_healthy(leader, 60)  # from a leader whose loop runs (and pings) now
    began = time.monotonic()
    wait_for(lambda: notify.since(began, "WATCHDOG=1"), 10, "the leader's watchdog")
    with site.db.transaction() as conn:
        # Every leader transaction fences on this row first: the dispatch loop now blocks,
        # while the status intake, which never touches it, goes on.
        conn.execute("LOCK TABLE cluster_epoch IN ACCESS EXCLUSIVE MODE")
        wait_for(lambda: waiting_for_a_lock(site, leader), 10, "the leader to wait for it")
        wait_for(lambda: not (leader.health() or {"live": True})["live"], 3 * WATCHDOG,
                 "the leader to say its loop stalled")
        assert (leader.health() or {}).get("reason") == "leader loop stalled"
        time.sleep(1.0)  # a ping decided just before the bound may arrive just after it
        notify.read()  # what came before the stall
        stalled = time.monotonic()
        time.sleep(WATCHDOG)  # a window longer than the watchdog's: none may arrive in it
        assert notify.since(stalled, "WATCHDOG=1") == []
        assert site.stack.wait_leader(1) is leader  # still holds leadership: only systemd
    resumed = time.monotonic()  # (which now restarts it) can end the hang
    wait_for(lambda: notify.since(resumed, "WATCHDOG=1"), 3 * WATCHDOG, "the watchdog again")
    wait_for(lambda: (leader.health() or {}).get("live"), 10, "the leader to be live again")

