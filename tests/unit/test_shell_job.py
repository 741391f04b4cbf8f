import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from workerd.jobtypes import JobContext, Outcome, RunKey
from workerd.jobtypes.shell import ShellJob
from workerd.output import MAX_CHUNK

KEY = RunKey(run_id=7, job_id=42, scheduled_for=datetime(2024, 5, 1, 12, tzinfo=UTC), attempt=2)


class Recorder:
    def __init__(self) -> None:
        self.chunks: list[tuple[str, bytes]] = []
        self.on_chunk: Any = None

    def __call__(self, stream: str, chunk: bytes) -> None:
        self.chunks.append((stream, chunk))
        if self.on_chunk is not None:
            self.on_chunk(stream, chunk)

    def text(self, stream: str) -> bytes:
        return b"".join(chunk for s, chunk in self.chunks if s == stream)


def context(
    payload: dict[str, Any], recorder: Recorder, timeout: float | None = 10.0, **kw: Any
) -> JobContext:
    return JobContext(KEY, payload, timeout, threading.Event(), recorder, {}, **kw)


def run(payload: dict[str, Any], **kw: Any) -> tuple[Outcome, Recorder]:
    recorder = Recorder()
    return ShellJob().run(context(payload, recorder, **kw)), recorder


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def gone_soon(pid: int) -> bool:
    give_up = time.monotonic() + 2
    while alive(pid) and time.monotonic() < give_up:
        time.sleep(0.02)
    return not alive(pid)


@pytest.fixture
def strays() -> Iterator[list[int]]:
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_command_that_exits_zero_succeeds() -> None:
    outcome, recorder = run({"command": "echo hello; echo oops >&2"})
    assert outcome == Outcome("succeeded", 0)
    assert recorder.text("stdout") == b"hello\n"
    assert recorder.text("stderr") == b"oops\n"


def test_a_command_that_exits_non_zero_fails_with_its_exit_status() -> None:
    assert run({"command": "exit 3"})[0] == Outcome("failed", 3, "exit status 3")


def test_an_argv_is_run_without_a_shell() -> None:
    outcome, recorder = run({"argv": ["/bin/echo", "$HOME", "a b"]})
    assert outcome.state == "succeeded"
    assert recorder.text("stdout") == b"$HOME a b\n"


RUN_VARIABLES = {
    "ZEITPLAN_RUN_ID": "7",
    "ZEITPLAN_JOB_ID": "42",
    "ZEITPLAN_SCHEDULED_FOR": "2024-05-01T12:00:00Z",
    "ZEITPLAN_ATTEMPT": "2",
    "ZEITPLAN_IDEMPOTENCY_KEY": "42:2024-05-01T12:00:00Z:2",
}


def environment_of(payload: dict[str, Any]) -> dict[str, str]:
    outcome, recorder = run({"argv": ["/usr/bin/env"], **payload})
    assert outcome.state == "succeeded"
    return dict(line.split("=", 1) for line in recorder.text("stdout").decode().splitlines())


def test_the_job_sees_path_home_lang_its_env_and_the_run_key_but_nothing_of_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What a worker's own environment holds: its broker credentials and settings.
    monkeypatch.setenv("ZEITPLAN_BROKER__URLS", "amqp://zeitplan:secret@mq1:5672/%2F")
    monkeypatch.setenv("AMQP_URL", "amqp://zeitplan:secret@mq1:5672/%2F")
    monkeypatch.setenv("PGPASSWORD", "secret")
    monkeypatch.setenv("HOME", "/home/worker")
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    assert environment_of({"env": {"GREETING": "hi"}}) == {
        "PATH": os.environ["PATH"],
        "HOME": "/home/worker",
        "LANG": "de_DE.UTF-8",
        "GREETING": "hi",
        **RUN_VARIABLES,
    }


def test_the_job_env_may_set_path_home_lang_but_not_the_run_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    own = {"PATH": "/opt/tool/bin:/usr/bin:/bin", "LANG": "C", "ZEITPLAN_RUN_ID": "999"}
    monkeypatch.delenv("HOME", raising=False)
    assert environment_of({"env": own}) == {
        "PATH": "/opt/tool/bin:/usr/bin:/bin",
        "HOME": "/",
        "LANG": "C",
        **RUN_VARIABLES,
    }


def test_a_worker_without_path_or_lang_gives_its_jobs_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PATH", raising=False)
    monkeypatch.delenv("LANG", raising=False)
    env = environment_of({})
    assert (env["PATH"], env["LANG"]) == ("/usr/local/bin:/usr/bin:/bin", "C.UTF-8")


def test_the_job_runs_in_its_cwd(tmp_path: Path) -> None:
    outcome, recorder = run({"command": "pwd", "cwd": str(tmp_path)})
    assert outcome.state == "succeeded"
    assert recorder.text("stdout") == f"{tmp_path}\n".encode()


def test_a_program_that_does_not_exist_fails_with_a_clear_error() -> None:
    outcome, _ = run({"argv": ["zeitplan-no-such-program"]})
    assert outcome == Outcome(
        "failed", None, "cannot start 'zeitplan-no-such-program': No such file or directory"
    )


def test_a_missing_cwd_fails_with_a_clear_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    outcome, _ = run({"command": "true", "cwd": missing})
    assert outcome.state == "failed"
    assert outcome.error == f"cannot change to directory {missing!r}: No such file or directory"


def test_an_invalid_payload_fails_without_running_anything() -> None:
    outcome, _ = run({"command": ""})
    assert outcome == Outcome("failed", None, "shell job: 'command' must be a non-empty string")


def test_output_is_streamed_before_the_job_exits(tmp_path: Path) -> None:
    # The job only finishes once the test has seen its first line.
    marker = tmp_path / "seen"
    command = 'echo first; while [ ! -e "$MARKER" ]; do sleep 0.02; done; echo second'
    recorder = Recorder()
    recorder.on_chunk = lambda stream, chunk: marker.touch()
    ctx = context({"command": command, "env": {"MARKER": str(marker)}}, recorder, timeout=5)
    assert ShellJob().run(ctx) == Outcome("succeeded", 0)
    assert recorder.chunks == [("stdout", b"first\n"), ("stdout", b"second\n")]


def test_a_timeout_kills_the_whole_process_group() -> None:
    outcome, recorder = run({"command": "sleep 30 & echo $!; wait"}, timeout=0.3)
    assert outcome == Outcome("timed_out", None, "timed out after 0.3 s")
    assert gone_soon(int(recorder.text("stdout")))


def test_a_cancel_stops_the_job_within_a_second() -> None:
    recorder = Recorder()
    started = threading.Event()
    recorder.on_chunk = lambda stream, chunk: started.set()
    ctx = context({"command": "echo started; sleep 30"}, recorder, timeout=None)
    outcomes: list[Outcome] = []
    runner = threading.Thread(target=lambda: outcomes.append(ShellJob().run(ctx)))
    runner.start()
    assert started.wait(5)
    cancelled_at = time.monotonic()
    ctx.cancel.set()
    runner.join(5)
    assert time.monotonic() - cancelled_at < 1.0
    assert outcomes == [Outcome("cancelled", None, "cancelled")]


def test_a_job_ignoring_sigterm_is_killed_after_the_grace() -> None:
    started = time.monotonic()
    outcome, _ = run({"command": "trap '' TERM; sleep 30"}, timeout=0.2, kill_grace=0.5)
    elapsed = time.monotonic() - started
    assert outcome.state == "timed_out"
    assert 0.7 <= elapsed < 3


def test_a_daemon_holding_the_pipes_does_not_hang_the_run_and_is_killed() -> None:
    started = time.monotonic()
    outcome, recorder = run({"command": "sleep 30 & echo $!"})
    assert outcome == Outcome("succeeded", 0)
    assert time.monotonic() - started < 3
    assert gone_soon(int(recorder.text("stdout")))


def test_a_daemon_in_its_own_session_does_not_hang_the_run(strays: list[int]) -> None:
    started = time.monotonic()
    outcome, recorder = run({"command": "setsid sleep 30 & echo $!"})
    strays.append(int(recorder.text("stdout")))
    assert outcome == Outcome("succeeded", 0)
    assert time.monotonic() - started < 3


def test_binary_output_is_passed_through_as_bytes() -> None:
    program = "import sys; sys.stdout.buffer.write(bytes(range(256)))"
    outcome, recorder = run({"argv": [sys.executable, "-c", program]})
    assert outcome.state == "succeeded"
    assert recorder.text("stdout") == bytes(range(256))


def test_huge_output_is_capped_in_small_chunks_and_the_job_still_finishes() -> None:
    outcome, recorder = run({"command": "head -c 5000000 /dev/zero; echo done >&2"})
    assert outcome.state == "succeeded"
    assert recorder.text("stdout") == bytes(1 << 20) + (
        b"\n[zeitplan: output truncated after 1048576 bytes]\n"
    )
    assert recorder.text("stderr") == b"done\n"
    assert max(len(chunk) for _, chunk in recorder.chunks) <= MAX_CHUNK


def test_the_output_limit_is_taken_from_the_context() -> None:
    outcome, recorder = run({"command": "echo 0123456789"}, output_limit=4)
    assert outcome.state == "succeeded"
    assert recorder.text("stdout") == b"0123\n[zeitplan: output truncated after 4 bytes]\n"
