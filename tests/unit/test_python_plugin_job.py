import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from workerd.jobtypes import JobContext, Outcome, RunKey
from workerd.jobtypes.example import SleepEcho
from workerd.jobtypes.python_plugin import ENTRY_POINT_GROUP, HelperThreads, PythonPluginJob

KEY = RunKey(run_id=1, job_id=2, scheduled_for=datetime(2024, 5, 1, tzinfo=UTC), attempt=1)

# A fake installed distribution: importlib.metadata finds its entry points on sys.path,
# so the loader is tested for real without installing anything.
PLUGINS = """
import time

from workerd.jobtypes import Outcome


class Boom:
    def run(self, ctx):
        raise ValueError("boom")


class Stubborn:
    def run(self, ctx):
        time.sleep(1)
        return Outcome("succeeded")


class Liar:
    def run(self, ctx):
        return "ok"
"""

ENTRY_POINTS = f"""
[{ENTRY_POINT_GROUP}]
test.sleep_echo = workerd.jobtypes.example:SleepEcho
test.boom = zeitplan_test_plugins:Boom
test.stubborn = zeitplan_test_plugins:Stubborn
test.liar = zeitplan_test_plugins:Liar
test.broken = zeitplan_no_such_module:Nothing
"""


@pytest.fixture(scope="module", autouse=True)
def installed_plugins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    root = tmp_path_factory.mktemp("plugins")
    (root / "zeitplan_test_plugins.py").write_text(PLUGINS)
    dist_info = root / "zeitplan_test_plugins-0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: zeitplan-test-plugins\n")
    (dist_info / "entry_points.txt").write_text(ENTRY_POINTS)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root))
        yield
    sys.modules.pop("zeitplan_test_plugins", None)


class Recorder:
    def __init__(self) -> None:
        self.chunks: list[tuple[str, bytes]] = []

    def __call__(self, stream: str, chunk: bytes) -> None:
        self.chunks.append((stream, chunk))

    def text(self, stream: str) -> bytes:
        return b"".join(chunk for s, chunk in self.chunks if s == stream)


def context(payload: dict[str, Any], timeout: float | None = 5.0, **kw: Any) -> JobContext:
    return JobContext(KEY, payload, timeout, threading.Event(), Recorder(), {}, **kw)


def output(ctx: JobContext, stream: str) -> bytes:
    assert isinstance(ctx.emit, Recorder)
    return ctx.emit.text(stream)


def test_sleep_echo_with_no_args_succeeds_silently() -> None:
    ctx = context({})
    assert SleepEcho().run(ctx) == Outcome("succeeded")
    assert output(ctx, "stdout") == b""


def test_sleep_echo_emits_its_message_as_a_line() -> None:
    ctx = context({"message": "hello", "seconds": 0.01})
    assert SleepEcho().run(ctx) == Outcome("succeeded")
    assert output(ctx, "stdout") == b"hello\n"


def test_sleep_echo_fails_when_asked() -> None:
    assert SleepEcho().run(context({"fail": True})) == Outcome("failed", error="failed as asked")


def test_sleep_echo_refuses_bad_args() -> None:
    assert SleepEcho().run(context({"seconds": "1"})).state == "failed"
    assert SleepEcho().run(context({"fail": "yes"})).state == "failed"


def test_sleep_echo_wakes_up_on_cancel() -> None:
    ctx = context({"seconds": 30})
    threading.Timer(0.1, ctx.cancel.set).start()
    started = time.monotonic()
    assert SleepEcho().run(ctx) == Outcome("cancelled", error="cancelled")
    assert time.monotonic() - started < 1


def test_an_unknown_plug_in_fails_saying_it_is_not_installed() -> None:
    outcome = PythonPluginJob().run(context({"entry_point": "nope.missing"}))
    assert outcome == Outcome("failed", error="no plug-in 'nope.missing' installed on this worker")


def test_an_invalid_payload_fails_without_loading_anything() -> None:
    outcome = PythonPluginJob().run(context({"entry_point": "a b"}))
    assert outcome.state == "failed"
    assert outcome.error is not None and "'entry_point' must be a plug-in name" in outcome.error


def test_a_plug_in_is_found_by_its_entry_point_and_gets_its_args() -> None:
    ctx = context({"entry_point": "test.sleep_echo", "args": {"message": "hi"}})
    assert PythonPluginJob().run(ctx) == Outcome("succeeded")
    assert output(ctx, "stdout") == b"hi\n"


def test_a_plug_in_running_past_its_timeout_times_out() -> None:
    ctx = context({"entry_point": "test.sleep_echo", "args": {"seconds": 30}}, timeout=0.2)
    started = time.monotonic()
    assert PythonPluginJob().run(ctx) == Outcome("timed_out", error="timed out after 0.2 s")
    assert time.monotonic() - started < 1


def test_a_cancelled_plug_in_is_cancelled() -> None:
    ctx = context({"entry_point": "test.sleep_echo", "args": {"seconds": 30}}, timeout=None)
    threading.Timer(0.1, ctx.cancel.set).start()
    assert PythonPluginJob().run(ctx) == Outcome("cancelled", error="cancelled")


def test_a_plug_in_that_raises_fails_with_the_exception_and_its_traceback() -> None:
    ctx = context({"entry_point": "test.boom"})
    assert PythonPluginJob().run(ctx) == Outcome("failed", error="ValueError: boom")
    traceback = output(ctx, "stderr")
    assert traceback.startswith(b"Traceback") and b"ValueError: boom" in traceback


def test_a_plug_in_ignoring_its_cancel_is_left_behind_after_the_grace() -> None:
    ctx = context({"entry_point": "test.stubborn"}, timeout=0.1, kill_grace=0.2)
    started = time.monotonic()
    outcome = PythonPluginJob().run(ctx)
    assert time.monotonic() - started < 0.8
    assert outcome == Outcome(
        "timed_out", error="timed out after 0.1 s; the plug-in ignored it and was left running"
    )


def test_a_plug_in_returning_something_else_than_an_outcome_fails() -> None:
    outcome = PythonPluginJob().run(context({"entry_point": "test.liar"}))
    assert outcome == Outcome("failed", error="TypeError: run() returned str, not an Outcome")


def test_a_plug_in_that_cannot_be_imported_fails_with_the_import_error() -> None:
    ctx = context({"entry_point": "test.broken"})
    outcome = PythonPluginJob().run(ctx)
    assert outcome == Outcome(
        "failed",
        error="cannot load plug-in 'test.broken': "
        "ModuleNotFoundError: No module named 'zeitplan_no_such_module'",
    )
    assert b"ModuleNotFoundError" in output(ctx, "stderr")


def test_helper_threads_are_reused_and_a_hung_call_does_not_hold_up_the_next() -> None:
    helpers = HelperThreads()
    seen: list[int] = []

    def note(done: threading.Event) -> None:
        seen.append(threading.get_ident())
        done.set()

    first, second = threading.Event(), threading.Event()
    helpers.run(lambda: note(first))
    assert first.wait(2)
    time.sleep(0.05)  # the helper is idle again
    helpers.run(lambda: note(second))
    assert second.wait(2)
    assert seen[0] == seen[1]  # the idle thread took it
    hang, after = threading.Event(), threading.Event()
    helpers.run(lambda: note(threading.Event()) if hang.wait() else None)  # blocks until set
    helpers.run(after.set)
    assert after.wait(2)  # started on a new thread meanwhile
    hang.set()


def test_plug_ins_left_running_are_capped_and_hand_their_end_to_the_attempt() -> None:
    job = PythonPluginJob(stray_limit=1)
    first = job.run(context({"entry_point": "test.stubborn"}, timeout=0.1, kill_grace=0.1))
    assert first.state == "timed_out" and first.leftover is not None
    refused = job.run(context({"entry_point": "test.sleep_echo", "args": {}}))
    assert refused.state == "failed" and refused.error is not None
    assert refused.error.startswith("refused: 1 python plug-in calls that ignored their "
                                    "cancel left running")
    ended = threading.Event()
    first.leftover.when_ended(ended.set)  # the attempt keeps its lock until this
    assert ended.wait(5)
    assert job.run(context({"entry_point": "test.sleep_echo", "args": {}})) \
        == Outcome("succeeded")
