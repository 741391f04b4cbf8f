"""The shell job type: a command (run by /bin/sh -c) or an argv, in its own process group.

A job gets a clean environment, never the worker's own (which holds the broker's
credentials and the worker's settings): PATH, HOME and LANG (the worker's values, or
defaults), the job's `env`, then the run's `ZEITPLAN_*` variables, which the job's `env`
cannot override.

The whole group is the job: on a cancel or a timeout it gets SIGTERM, and whatever is
left once the main process exits (or after `kill_grace`) gets SIGKILL. A background
process that still holds the output pipes after the main process exits is killed too,
so it cannot hold up the worker.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from typing import IO, Any

from workerd.jobtypes import (
    POLL_INTERVAL,
    Deadline,
    JobContext,
    Outcome,
    RunKey,
    Stop,
    checked_payload,
    stop_reason,
    stopped,
)
from workerd.output import FLUSH_INTERVAL, MAX_CHUNK, CappedOutput

# The only variables a job takes from the worker's environment, with defaults for a
# worker started without them.
INHERITED = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/", "LANG": "C.UTF-8"}
READER_GRACE = 0.5  # seconds the readers get to reach end of output once the job exits
_FIRST_POLL = 0.001  # short jobs are noticed quickly; the poll interval doubles up to POLL_INTERVAL


class ShellJob:
    """Runs shell payloads: {"command": str} or {"argv": [...]}, with optional "env" and "cwd"."""

    def run(self, ctx: JobContext) -> Outcome:
        """Run the process to its end, its timeout or a cancel, streaming its output."""
        payload = checked_payload("shell", ctx)
        if isinstance(payload, Outcome):
            return payload
        deadline = Deadline(ctx.timeout)
        args = payload.get("argv") or ["/bin/sh", "-c", payload["command"]]
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=_environment(ctx.key, payload["env"]),
                cwd=payload.get("cwd"),
                start_new_session=True,
            )
        except OSError as exc:
            return Outcome("failed", error=_start_error(exc, args[0], payload.get("cwd")))
        readers = _Readers(proc, CappedOutput(ctx.emit, ctx.output_limit))
        finished = False
        try:
            reason = _supervise(proc.pid, ctx, deadline)
            readers.finish(proc.pid)
            finished = True
        finally:
            if not finished:
                _signal_group(proc.pid, signal.SIGKILL)
                readers.stop.set()
            returncode = proc.wait()
        if readers.error is not None:
            raise readers.error
        if reason is not None:
            return stopped(reason, deadline, returncode if returncode >= 0 else None)
        return _exit_outcome(returncode)


def _environment(key: RunKey, extra: Mapping[str, str]) -> dict[str, str]:
    env = {name: os.environ.get(name) or default for name, default in INHERITED.items()}
    env.update(extra)
    env.update(
        ZEITPLAN_RUN_ID=str(key.run_id),
        ZEITPLAN_JOB_ID=str(key.job_id),
        ZEITPLAN_SCHEDULED_FOR=key.scheduled_for_utc,
        ZEITPLAN_ATTEMPT=str(key.attempt),
        ZEITPLAN_IDEMPOTENCY_KEY=key.idempotency_key,
    )
    return env


def _start_error(exc: OSError, program: str, cwd: Any) -> str:
    if cwd is not None and exc.filename == cwd:
        return f"cannot change to directory {cwd!r}: {exc.strerror}"
    return f"cannot start {program!r}: {exc.strerror}"


def _exit_outcome(returncode: int) -> Outcome:
    if returncode == 0:
        return Outcome("succeeded", 0)
    if returncode < 0:
        return Outcome("failed", None, f"killed by {signal.Signals(-returncode).name}")
    return Outcome("failed", returncode, f"exit status {returncode}")


def _exited(pid: int) -> bool:
    """Whether the process has exited, leaving it unreaped so its pid still names its group."""
    try:
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        return os.waitid(os.P_PID, pid, flags) is not None
    except ChildProcessError:
        return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _supervise(pid: int, ctx: JobContext, deadline: Deadline) -> Stop | None:
    """Wait for the main process to exit; stop the group on a cancel or the timeout."""
    delay = _FIRST_POLL
    while not _exited(pid):
        reason = stop_reason(ctx, deadline)
        if reason is not None:
            _terminate(pid, ctx.kill_grace)
            return reason
        ctx.cancel.wait(delay)
        delay = min(delay * 2, POLL_INTERVAL)
    return None


def _terminate(pid: int, grace: float) -> None:
    _signal_group(pid, signal.SIGTERM)
    give_up = time.monotonic() + grace
    while not _exited(pid) and time.monotonic() < give_up:
        time.sleep(POLL_INTERVAL)
    # The main process has exited or had its chance; the rest of the group goes with it.
    _signal_group(pid, signal.SIGKILL)


class _Readers:
    """One thread per output pipe, emitting what it reads at least every FLUSH_INTERVAL."""

    def __init__(self, proc: subprocess.Popen[bytes], out: CappedOutput) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        self.stop = threading.Event()
        self.error: Exception | None = None
        self._out = out
        self._threads = [
            threading.Thread(target=self._pump, args=(pipe, stream), daemon=True)
            for stream, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr))
        ]
        for thread in self._threads:
            thread.start()

    def finish(self, pgid: int) -> None:
        """Let the readers reach end of output; if the group's leftovers hold the pipes open,
        kill them, and if something outside the group does, stop reading."""
        if self._join(READER_GRACE):
            return
        _signal_group(pgid, signal.SIGKILL)
        if not self._join(READER_GRACE):
            self.stop.set()
            self._join(None)

    def _join(self, timeout: float | None) -> bool:
        give_up = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if give_up is None else max(0.0, give_up - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _pump(self, pipe: IO[bytes], stream: str) -> None:
        fd = pipe.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        buffer = bytearray()
        first_at = 0.0
        try:
            while not self.stop.is_set():
                wait = POLL_INTERVAL
                if buffer:
                    wait = min(wait, FLUSH_INTERVAL - (time.monotonic() - first_at))
                if poller.poll(max(0, math.ceil(wait * 1000))):
                    data = os.read(fd, MAX_CHUNK - len(buffer))
                    if not data:
                        break
                    if not buffer:
                        first_at = time.monotonic()
                    buffer += data
                if buffer and (
                    len(buffer) >= MAX_CHUNK or time.monotonic() - first_at >= FLUSH_INTERVAL
                ):
                    self._write(stream, bytes(buffer))
                    buffer.clear()
            self._write(stream, bytes(buffer))
        finally:
            pipe.close()

    def _write(self, stream: str, data: bytes) -> None:
        # A failing emit must not stop the draining, or the job would block on a full pipe;
        # the error is raised to the caller once the process is gone.
        try:
            self._out.write(stream, data)
        except Exception as exc:
            if self.error is None:
                self.error = exc
            self._out.close()
