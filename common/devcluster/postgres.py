"""A PostgreSQL primary with one synchronous streaming standby (``application_name=replica1``).

As root the servers run as the ``postgres`` user (PostgreSQL refuses root), so their
directories belong to it and every parent of the state directory must let it through.
fsync stays on: measured here, it costs nothing noticeable at start-up.
"""

from __future__ import annotations

import getpass
import os
import pwd
import shutil
import signal
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

from common.devcluster import ports
from common.devcluster.node import ServiceNode, wait_for
from common.devcluster.process import ManagedProcess, failure, run_command
from common.errors import HarnessError

PG_ROOT = Path("/usr/lib/postgresql")
STANDBY_NAME = "replica1"
DATABASE = "zeitplan"
_SOCKET_PATH_MAX = 107  # sun_path, minus the terminating NUL


def bindir() -> Path:
    """The newest installed PostgreSQL's bin directory."""
    found = sorted((d for d in PG_ROOT.glob("*/bin") if (d / "postgres").is_file()),
                   key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0)
    if not found:
        raise HarnessError(f"postgres: no server binaries under {PG_ROOT} "
                           "(apt-get install postgresql)")
    return found[-1]


def os_user() -> str | None:
    """The account the servers run as: ``postgres`` when we are root, else ourselves."""
    return "postgres" if os.geteuid() == 0 else None


class PostgresNode(ServiceNode):
    """One PostgreSQL server; a standby is ready only once its upstream reports it sync."""

    kind = "postgres"

    def __init__(self, name: str, port: int, process: ManagedProcess, *, data_dir: Path,
                 bin_dir: Path, upstream: PostgresNode | None = None) -> None:
        super().__init__(name, {"pg": port}, process)
        self.data_dir = data_dir
        self.bin_dir = bin_dir
        self.upstream = upstream
        self.db_user = os_user() or getpass.getuser()

    def dsn(self, dbname: str = DATABASE) -> str:
        """A libpq DSN for this server alone."""
        return f"host=127.0.0.1 port={self.ports['pg']} dbname={dbname} user={self.db_user}"

    def query(self, sql: str, dbname: str = "postgres") -> str | None:
        """Run one statement with psql; its unaligned output, or None when it fails."""
        try:
            done = subprocess.run(
                [str(self.bin_dir / "psql"), "-XAtq", "-v", "ON_ERROR_STOP=1",
                 "-h", "127.0.0.1", "-p", str(self.ports["pg"]), "-U", self.db_user,
                 "-d", dbname, "-c", sql],
                capture_output=True, timeout=10, check=False,
                env={**os.environ, "PGCONNECT_TIMEOUT": "2"})
        except subprocess.TimeoutExpired:
            return None
        return done.stdout.decode().strip() if done.returncode == 0 else None

    def in_recovery(self) -> bool | None:
        """True for a standby, False for a primary, None when it does not answer."""
        answer = self.query("SELECT pg_is_in_recovery()")
        return None if answer is None else answer == "t"

    def ready(self) -> bool:
        """Accepting connections, and (for a standby of a running upstream) streaming sync."""
        recovering = self.in_recovery()
        if recovering is None:
            return False
        if not recovering or self.upstream is None or not self.upstream.is_running():
            return True
        return self.upstream.query(
            "SELECT sync_state FROM pg_stat_replication "
            f"WHERE application_name = '{STANDBY_NAME}'") == "sync"

    def run(self, tool: str, *args: str, timeout: float = 60.0) -> None:
        """Run a PostgreSQL client tool as the server's OS user, logging to the node's log."""
        run_command(self.name, [str(self.bin_dir / tool), *args], log_path=self.log_path,
                           user=os_user(), timeout=timeout)


def build_pair(root: Path, logs: Path, *, standby: bool,
               on_start: Callable[[ManagedProcess], None] | None = None
               ) -> list[PostgresNode]:
    """Describe pg-primary (and pg-standby) under `root`; nothing is created on disk yet."""
    bin_dir = bindir()
    names = ["pg-primary", "pg-standby"] if standby else ["pg-primary"]
    nodes: list[PostgresNode] = []
    for name, port in zip(names, ports.free_ports(len(names)), strict=True):
        data_dir = root / name.removeprefix("pg-")
        process = ManagedProcess(
            name, [str(bin_dir / "postgres"), "-D", str(data_dir)], env={"LC_ALL": "C.UTF-8"},
            cwd=root, log_path=logs / f"{name}.log", user=os_user(), stop_timeout=30.0,
            stop_signal=signal.SIGINT,  # fast shutdown: do not wait for clients to leave
            on_start=on_start)
        nodes.append(PostgresNode(name, port, process, data_dir=data_dir, bin_dir=bin_dir,
                                  upstream=nodes[0] if nodes else None))
    return nodes


def bring_up(nodes: list[PostgresNode], timeout: float) -> None:
    """initdb the primary, start it, clone and start the standby, create the database."""
    primary, standbys = nodes[0], nodes[1:]
    root = primary.data_dir.parent
    sockets = root / "sock"
    _prepare_root(primary, root, sockets)
    primary.run("initdb", "-D", str(primary.data_dir), "--auth=trust", "-E", "UTF8",
                "--locale=C.UTF-8", "-U", primary.db_user)
    _append(primary.data_dir / "pg_hba.conf", "host all all 127.0.0.1/32 trust",
            "host replication all 127.0.0.1/32 trust")
    _append(primary.data_dir / "postgresql.conf",
            "listen_addresses = '127.0.0.1'", f"port = {primary.ports['pg']}",
            f"unix_socket_directories = '{sockets}'", "logging_collector = off",
            "log_line_prefix = '%m [%p] '", "max_connections = 200",
            "wal_level = replica", "max_wal_senders = 10", "wal_keep_size = '256MB'",
            "hot_standby = on", "synchronous_commit = on",
            f"synchronous_standby_names = '{STANDBY_NAME if standbys else ''}'")
    primary.start()
    primary.wait_ready(timeout)
    for standby in standbys:
        standby.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.ports["pg"]),
                    "-U", primary.db_user, "-D", str(standby.data_dir), "-X", "stream",
                    "-c", "fast")
        (standby.data_dir / "standby.signal").touch()
        _append(standby.data_dir / "postgresql.conf",
                f"port = {standby.ports['pg']}",
                # Once promoted it stands alone: nothing left to wait for.
                "synchronous_standby_names = ''",
                f"primary_conninfo = 'host=127.0.0.1 port={primary.ports['pg']} "
                f"user={primary.db_user} application_name={STANDBY_NAME}'")
        _chown(standby.data_dir / "standby.signal")
        standby.start()
        standby.wait_ready(timeout)
    if primary.query(f"CREATE DATABASE {DATABASE}") is None:
        raise failure(primary.name, f"CREATE DATABASE {DATABASE} failed", primary.log_path)


def promote(standby: PostgresNode, timeout: float) -> None:
    """pg_ctl promote the standby and wait until it accepts writes."""
    standby.run("pg_ctl", "promote", "-D", str(standby.data_dir), "-w", "-t", str(int(timeout)),
                timeout=timeout + 5)
    wait_for(lambda: standby.query("SELECT txid_current()") is not None, timeout,
             name=standby.name, log_path=standby.log_path, what="accepting writes",
             process=standby.process)


def _prepare_root(primary: PostgresNode, root: Path, sockets: Path) -> None:
    socket_path = sockets / f".s.PGSQL.{primary.ports['pg']}"
    if len(str(socket_path)) > _SOCKET_PATH_MAX:
        raise HarnessError(f"{primary.name}: socket path {socket_path} is too long for a unix "
                           "socket; use a shorter state directory")
    user = os_user()
    if user is not None:
        _check_traversable(primary.name, root.parent, pwd.getpwnam(user))
    sockets.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    _chown(root)
    _chown(sockets)


def _check_traversable(name: str, directory: Path, account: pwd.struct_passwd) -> None:
    groups = set(os.getgrouplist(account.pw_name, account.pw_gid))
    for path in [directory.resolve(), *directory.resolve().parents]:
        info = path.stat()
        if info.st_uid == account.pw_uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            raise HarnessError(
                f"{name}: user {account.pw_name} cannot traverse {path} "
                f"(mode {stat.filemode(info.st_mode)}); put the state directory under a path "
                "every user can traverse, e.g. tempfile.mkdtemp() chmod 0755 under /tmp")


def _chown(path: Path) -> None:
    user = os_user()
    if user is not None:
        shutil.chown(path, user, pwd.getpwnam(user).pw_gid)


def _append(path: Path, *lines: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n# zeitplan devcluster\n" + "".join(f"{line}\n" for line in lines))
