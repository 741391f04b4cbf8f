"""One child process in its own session, and the one-shot commands the harness runs."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from common.devcluster import procfs
from common.errors import HarnessError

_LOG_TAIL_LINES = 25


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a log file ("" when it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def failure(name: str, what: str, log_path: Path) -> HarnessError:
    """A HarnessError naming the node, pointing at its log and quoting the log's end."""
    tail = log_tail(log_path)
    quoted = "\n".join(f"    {line}" for line in tail.splitlines()) or "    (log is empty)"
    return HarnessError(f"{name}: {what}; see {log_path}, which ends with:\n{quoted}")


def _identity(user: str | None) -> tuple[int | None, int | None, list[int] | None]:
    """uid, gid and groups that switch a child to `user` (only when running as root)."""
    if user is None or os.geteuid() != 0:
        return None, None, None
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid, os.getgrouplist(user, entry.pw_gid)


def run_command(name: str, argv: Sequence[str], *, log_path: Path, user: str | None = None,
                timeout: float = 60.0) -> None:
    """Run a command to completion as `user`, appending its output to the node's log.

    Raises HarnessError (quoting the log) when it fails or outlives `timeout`.
    """
    uid, gid, groups = _identity(user)
    try:
        done = subprocess.run(list(argv), capture_output=True, timeout=timeout, check=False,
                              user=uid, group=gid, extra_groups=groups)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise failure(name, f"{argv[0]} failed: {exc}", log_path) from exc
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"--- {' '.join(argv)} (exit {done.returncode})\n".encode())
        log.write(done.stdout + done.stderr)
    if done.returncode != 0:
        raise failure(name, f"{Path(argv[0]).name} exited with {done.returncode}", log_path)


class ManagedProcess:
    """A long-running child started in its own session so that signals reach its whole group.

    `env` is added to the current environment. Every child (and whatever it spawns with
    that environment) carries a unique ``ZEITPLAN_PROCESS_TAG`` so that stop() also finds
    processes that left the group, such as a daemonised helper or the Erlang VM named by
    `pidfile`. A process that left both the group and the environment (a worker's job runs
    in a session of its own with a clean environment) is found as a descendant: kill() and
    stop() take those present when they begin, as a machine's death would.
    """

    def __init__(self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None,
                 cwd: Path | None, log_path: Path, user: str | None = None,
                 stop_timeout: float = 10.0, pidfile: Path | None = None,
                 stop_signal: int = signal.SIGTERM,
                 on_start: Callable[[ManagedProcess], None] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.pidfile = pidfile
        self.tag = f"{uuid.uuid4().hex}:{name}"
        self._env = {**(env or {}), procfs.TAG_VARIABLE: self.tag}
        self._cwd = cwd
        self._user = user
        self._stop_timeout = stop_timeout
        self._stop_signal = stop_signal
        self.on_start = on_start
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The main process's pid while it runs."""
        return self._popen.pid if self.is_running() and self._popen else None

    @property
    def returncode(self) -> int | None:
        """The exit status once the main process has ended (negative: killed by a signal)."""
        return self._popen.poll() if self._popen else None

    def start(self) -> None:
        """Start the process (no-op when it already runs)."""
        if self.is_running():
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} starting: {' '.join(self.argv)}\n"
                      .encode())
            log.flush()
            uid, gid, groups = _identity(self._user)
            try:
                self._popen = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env={**os.environ, **self._env}, cwd=self._cwd, start_new_session=True,
                    user=uid, group=gid, extra_groups=groups)
            except OSError as exc:
                raise failure(self.name, f"cannot start {self.argv[0]}: {exc}",
                              self.log_path) from exc
        if self.on_start is not None:
            self.on_start(self)

    def is_running(self) -> bool:
        """True while the main process lives (a paused process counts as running)."""
        return self._popen is not None and self._popen.poll() is None

    def signal(self, sig: int) -> None:
        """Send `sig` to the main process only (stop, kill, pause and resume act on the group)."""
        if self._popen is not None and self.is_running():
            self._popen.send_signal(sig)

    def stop(self) -> None:
        """Stop signal to the group, wait up to stop_timeout, then SIGKILL; idempotent."""
        popen = self._popen
        family: dict[int, int | None] = {}
        if popen is not None and popen.poll() is None:
            family = _listed(procfs.descendants(popen.pid))
            self._signal_group(self._stop_signal)
            self._signal_group(signal.SIGCONT)  # a paused group cannot act on the signal
            try:
                popen.wait(self._stop_timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                popen.wait()
        self._reap_leftovers(family)

    def kill(self) -> None:
        """SIGKILL the whole group, and every descendant, now and wait until it is gone."""
        family: dict[int, int | None] = {}
        if self._popen is not None and self._popen.poll() is None:
            self._signal_group(signal.SIGSTOP)  # no new descendant while they are listed
            family = _listed(procfs.descendants(self._popen.pid))
            self._signal_group(signal.SIGKILL)
            self._popen.wait()
        self._reap_leftovers(family)

    def pause(self) -> None:
        """SIGSTOP the whole group; returns once every member has stopped (at most 5 s)."""
        self._signal_group(signal.SIGSTOP)
        if self._popen is None or not self.is_running():
            return
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(
                procfs.state(pid) not in ("T", None)
                for pid in procfs.group_members(self._popen.pid)):
            time.sleep(0.01)

    def resume(self) -> None:
        """SIGCONT the whole group."""
        self._signal_group(signal.SIGCONT)

    def restart(self) -> None:
        """stop() then start()."""
        self.stop()
        self.start()

    def _signal_group(self, sig: int) -> None:
        # The group id is the main pid (new session); only signal it while the main
        # process is alive (or a zombie we have not reaped), so the id cannot be reused.
        if self._popen is None or self._popen.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, sig)

    def _reap_leftovers(self, family: dict[int, int | None]) -> None:
        """SIGKILL, and wait for, what outlived the main process.

        That is: the rest of its group (even members already dying, whose environment
        can no longer be read), tagged processes that left the group, the descendants
        `family` listed while the main process lived (those whose start time is unchanged,
        so a reused pid is spared), the pidfile's pid.
        """
        suspects = procfs.tagged_pids([self.tag])
        suspects += [pid for pid, ticks in family.items() if procfs.start_ticks(pid) == ticks]
        pgid = self._popen.pid if self._popen is not None else 0
        # While the main pid is not reused, a group with its id can only be ours.
        if pgid and not procfs.is_alive(pgid):
            suspects += procfs.group_members(pgid)
        if self.pidfile is not None:
            try:
                pid = int(self.pidfile.read_text().strip())
            except (OSError, ValueError):
                pid = 0
            if pid > 0 and (procfs.has_tag(pid, self.tag)
                            or (pgid and procfs.process_group(pid) == pgid)):
                suspects.append(pid)
        procfs.kill_all(set(suspects))


def _listed(pids: list[int]) -> dict[int, int | None]:
    """Each pid with its start time, to tell it later from a process that reused the pid."""
    return {pid: procfs.start_ticks(pid) for pid in pids}
