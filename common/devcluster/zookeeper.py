"""A ZooKeeper ensemble from Debian's jars: one JVM, zoo.cfg and data directory per node."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from common.devcluster import ports
from common.devcluster.node import ServiceNode
from common.devcluster.process import ManagedProcess
from common.errors import HarnessError

JAVA_DIR = Path("/usr/share/java")
# Without netty-codec the servers elect a leader but every client connection dies.
JARS = ("zookeeper", "netty-codec", "slf4j-log4j12", "log4j-1.2")
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
JVM_OPTIONS = ("-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData",
               "-Djava.net.preferIPv4Stack=true")
SERVING_MODES = ("leader", "follower", "standalone")

_LOG4J = """\
log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] %m%n
"""


def classpath() -> str:
    """The JVM classpath; HarnessError naming any missing jar."""
    jars = [JAVA_DIR / f"{jar}.jar" for jar in JARS]
    missing = [str(jar) for jar in jars if not jar.is_file()]
    if missing:
        raise HarnessError(f"zookeeper: missing jars {', '.join(missing)} "
                           "(apt-get install zookeeper)")
    return ":".join(str(jar) for jar in jars)


def server_mode(client_port: int) -> str | None:
    """The node's ``Mode:`` from the ``srvr`` four-letter word (None when it does not answer)."""
    reply = ports.ask(client_port, b"srvr").decode("utf-8", errors="replace")
    for line in reply.splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip()
    return None


class ZooKeeperNode(ServiceNode):
    """One ZooKeeper server; ready when it serves as leader, follower or standalone."""

    kind = "zookeeper"

    def ready(self) -> bool:
        """True when ``srvr`` reports a serving mode."""
        return server_mode(self.ports["client"]) in SERVING_MODES


def build_ensemble(root: Path, logs: Path, count: int, *,
                   on_start: Callable[[ManagedProcess], None] | None = None
                   ) -> list[ZooKeeperNode]:
    """Write the configuration of `count` nodes named zk1..zkN under `root` (not started)."""
    java = shutil.which("java")
    if java is None:
        raise HarnessError("zookeeper: no `java` on PATH (apt-get install zookeeper)")
    cp = classpath()
    log4j = root / "log4j.properties"
    root.mkdir(parents=True, exist_ok=True)
    log4j.write_text(_LOG4J, encoding="utf-8")
    allocated = ports.free_ports(3 * count)
    node_ports = [{"client": allocated[3 * i], "peer": allocated[3 * i + 1],
                   "election": allocated[3 * i + 2]} for i in range(count)]
    servers = [f"server.{i + 1}=127.0.0.1:{p['peer']}:{p['election']}"
               for i, p in enumerate(node_ports)] if count > 1 else []
    nodes = []
    for index, node_port in enumerate(node_ports, start=1):
        name = f"zk{index}"
        data = root / name / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / "myid").write_text(f"{index}\n", encoding="ascii")
        config = root / name / "zoo.cfg"
        config.write_text("\n".join([
            "tickTime=500", "initLimit=20", "syncLimit=10",
            f"dataDir={data}",
            f"clientPort={node_port['client']}", "clientPortAddress=127.0.0.1",
            # Short sessions for failure tests; long ones for slow clients.
            "minSessionTimeout=1000", "maxSessionTimeout=60000",
            "admin.enableServer=false",
            "4lw.commands.whitelist=srvr,ruok,mntr,stat",
            *servers, ""]), encoding="utf-8")
        process = ManagedProcess(
            name, [java, *JVM_OPTIONS, f"-Dlog4j.configuration=file:{log4j}", "-cp", cp,
                   MAIN_CLASS, str(config)],
            env=None, cwd=root / name, log_path=logs / f"{name}.log", on_start=on_start)
        nodes.append(ZooKeeperNode(name, node_port, process))
    return nodes


def hosts(nodes: list[ZooKeeperNode]) -> str:
    """The kazoo connection string for `nodes`."""
    return ",".join(f"127.0.0.1:{node.ports['client']}" for node in nodes)
