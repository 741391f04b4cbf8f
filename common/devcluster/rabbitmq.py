"""A RabbitMQ cluster on one host: private epmd, private HOME and cookie, one dir per node.

The first node has no peers configured and boots alone; once it answers AMQP the others
start together, listing only the first (classic_config peer discovery), so they cannot form
a second cluster among themselves. The cluster is ready when rabbitmqctl's
cluster_status lists every node as running.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import string
import subprocess
from collections.abc import Callable
from pathlib import Path

from common.devcluster import ports
from common.devcluster.node import ServiceNode, wait_for
from common.devcluster.process import ManagedProcess
from common.errors import HarnessError

SBIN = Path("/usr/lib/rabbitmq/bin")
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
CTL_PORTS = 10  # rabbitmqctl runs concurrently; each needs a distribution port
DISCOVERY_RETRIES = 240
CONSUMER_TIMEOUT_MS = 86_400_000  # jobs may run for hours; the default (30 min) kills them


def short_hostname() -> str:
    """The host part of node names: the short hostname if it resolves, else localhost."""
    host = socket.gethostname().split(".")[0]
    try:
        socket.gethostbyname(host)
    except OSError:
        return "localhost"
    return host


def amqp_greets(port: int) -> bool:
    """True when the AMQP listener answers a protocol header with Connection.Start."""
    reply = ports.ask(port, AMQP_HEADER, until_close=False)
    return reply[:1] == b"\x01"  # a method frame


class RabbitNode(ServiceNode):
    """One RabbitMQ node; ready when AMQP answers and the cluster counts it as running."""

    kind = "rabbitmq"

    def __init__(self, name: str, node_ports: dict[str, int], process: ManagedProcess, *,
                 nodename: str, env: dict[str, str]) -> None:
        super().__init__(name, node_ports, process)
        self.nodename = nodename
        self._env = env

    @property
    def amqp_url(self) -> str:
        """The AMQP URL of this node (guest user, default vhost)."""
        return f"amqp://guest:guest@127.0.0.1:{self.ports['amqp']}/%2F"

    def ctl(self, *args: str, timeout: float = 30.0) -> str | None:
        """Run rabbitmqctl against this node; its stdout, or None when it fails."""
        try:
            done = subprocess.run([str(SBIN / "rabbitmqctl"), "-n", self.nodename, *args],
                                  capture_output=True, timeout=timeout, check=False,
                                  env=self._env)
        except subprocess.TimeoutExpired:
            return None
        return done.stdout.decode() if done.returncode == 0 else None

    def running_nodes(self) -> list[str]:
        """Node names this node sees as running (empty when it does not answer)."""
        output = self.ctl("cluster_status", "--formatter", "json")
        if output is None:
            return []
        try:
            return [str(node) for node in json.loads(output).get("running_nodes", [])]
        except ValueError:
            return []

    def queue_leaders(self) -> dict[str, str]:
        """Queue name -> the node name that leads it, as this node reports it (empty when
        it does not answer)."""
        output = self.ctl("list_queues", "name", "leader", "--quiet", "--no-table-headers")
        rows = [line.split("\t") for line in (output or "").splitlines()]
        return {row[0]: row[1] for row in rows if len(row) >= 2}

    def ready(self) -> bool:
        """AMQP answers and this node sees itself running in the cluster."""
        return amqp_greets(self.ports["amqp"]) and self.nodename in self.running_nodes()


def build_cluster(root: Path, logs: Path, count: int, *,
                  on_start: Callable[[ManagedProcess], None] | None = None
                  ) -> tuple[ManagedProcess, list[RabbitNode]]:
    """Write the configuration of epmd and nodes rabbit1..rabbitN under `root`."""
    if not (SBIN / "rabbitmq-server").is_file():
        raise HarnessError(f"rabbitmq: no {SBIN / 'rabbitmq-server'} "
                           "(apt-get install rabbitmq-server)")
    epmd_binary = shutil.which("epmd") or "/usr/bin/epmd"
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    cookie = home / ".erlang.cookie"
    cookie.unlink(missing_ok=True)
    cookie.write_text("".join(secrets.choice(string.ascii_uppercase) for _ in range(20)))
    cookie.chmod(0o400)
    epmd_port, *node_port_list = ports.free_ports(1 + 2 * count)
    ctl_min = ports.free_port_range(CTL_PORTS)
    host = short_hostname()
    nodenames = [f"rabbit{i}@{host}" for i in range(1, count + 1)]
    common_env = {
        "HOME": str(home), "ERL_EPMD_PORT": str(epmd_port), "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_CTL_DIST_PORT_MIN": str(ctl_min),
        "RABBITMQ_CTL_DIST_PORT_MAX": str(ctl_min + CTL_PORTS - 1),
        "NOTIFY_SOCKET": "",  # even under systemd, keep the wrapper that forwards SIGTERM
    }
    epmd = ManagedProcess("epmd", [epmd_binary, "-port", str(epmd_port), "-address", "127.0.0.1"],
                          env=common_env, cwd=root, log_path=logs / "epmd.log",
                          on_start=on_start)
    # Waits up to DISCOVERY_RETRIES * 0.5 s for the first node while the others boot.
    join_first = ["cluster_formation.peer_discovery_backend = classic_config",
                  f"cluster_formation.classic_config.nodes.1 = {nodenames[0]}",
                  f"cluster_formation.discovery_retry_limit = {DISCOVERY_RETRIES}",
                  "cluster_formation.discovery_retry_interval = 500"]
    nodes = []
    for index, nodename in enumerate(nodenames):
        name = nodename.split("@")[0]
        amqp, dist = node_port_list[2 * index], node_port_list[2 * index + 1]
        node_dir = root / name
        node_dir.mkdir(parents=True, exist_ok=True)
        (node_dir / "enabled_plugins").write_text("[].\n")
        (node_dir / "rabbitmq-env.conf").write_text("")
        (node_dir / "rabbitmq.conf").write_text("\n".join([
            f"listeners.tcp.default = 127.0.0.1:{amqp}",
            "loopback_users = none",
            "disk_free_limit.absolute = 10MB",
            f"consumer_timeout = {CONSUMER_TIMEOUT_MS}",
            "cluster_partition_handling = pause_minority",
            *(join_first if index else []), ""]))
        env = {**common_env,
               "RABBITMQ_NODENAME": nodename, "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
               "RABBITMQ_NODE_PORT": str(amqp), "RABBITMQ_DIST_PORT": str(dist),
               "RABBITMQ_MNESIA_BASE": str(node_dir / "mnesia"),
               "RABBITMQ_LOG_BASE": str(node_dir / "log"), "RABBITMQ_LOGS": "-",
               "RABBITMQ_PID_FILE": str(node_dir / "rabbit.pid"),
               "RABBITMQ_CONFIG_FILE": str(node_dir / "rabbitmq.conf"),
               "RABBITMQ_ADVANCED_CONFIG_FILE": str(node_dir / "advanced.config"),
               "RABBITMQ_ENABLED_PLUGINS_FILE": str(node_dir / "enabled_plugins"),
               "RABBITMQ_CONF_ENV_FILE": str(node_dir / "rabbitmq-env.conf"),
               "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
               "ERL_CRASH_DUMP": str(node_dir / "erl_crash.dump")}
        process = ManagedProcess(
            name, [str(SBIN / "rabbitmq-server")], env=env, cwd=node_dir,
            log_path=logs / f"{name}.log", stop_timeout=30.0,
            pidfile=node_dir / "rabbit.pid", on_start=on_start)
        ctl_env = {**os.environ, **env}
        nodes.append(RabbitNode(name, {"amqp": amqp, "dist": dist, "epmd": epmd_port},
                                process, nodename=nodename, env=ctl_env))
    return epmd, nodes


def bring_up(epmd: ManagedProcess, nodes: list[RabbitNode], timeout: float) -> None:
    """Start epmd, then every node; wait until all answer AMQP and run clustered."""
    epmd.start()
    epmd_port = nodes[0].ports["epmd"]
    wait_for(lambda: ports.accepts(epmd_port), timeout, name=epmd.name,
             log_path=epmd.log_path, what="listening", process=epmd)
    # The first node starts alone: a peer that boots while it is not up yet can initialise
    # a schema of its own and then fail to join (seen under load as a mnesia
    # table_attributes_mismatch). The others then join it together.
    nodes[0].start()
    _wait_amqp(nodes[0], timeout)
    for node in nodes[1:]:
        node.start()
    for node in nodes[1:]:
        _wait_amqp(node, timeout)
    first = nodes[0]
    expected = {node.nodename for node in nodes}
    wait_for(lambda: expected <= set(first.running_nodes()), timeout, name=first.name,
             log_path=first.log_path, what=f"clustered with all of {sorted(expected)}",
             process=first.process)


def _wait_amqp(node: RabbitNode, timeout: float) -> None:
    wait_for(lambda: amqp_greets(node.ports["amqp"]), timeout, name=node.name,
             log_path=node.log_path, what="answering AMQP", process=node.process)
