"""The python job type: a plug-in class installed under the `zeitplan.job_types` entry points.

A plug-in is a class taking no arguments with `run(self, ctx: JobContext) -> Outcome`. It
sees the job's `args` as `ctx.payload`, and runs on a helper thread so that whatever it does
(raise, hang, ignore its cancel) the worker carries on: on a cancel or the timeout the
plug-in's own `ctx.cancel` is set and it gets `kill_grace` seconds to return before it is
abandoned: its Outcome carries the still running call (`leftover`, so the attempt keeps
its job's lock until the call returns), and at `STRAY_LIMIT` such calls the worker refuses
python attempts with a failed outcome saying why. Helper threads are reused (starting a
thread per run cost more than a no-op run).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import traceback
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from workerd.jobtypes import (
    Deadline,
    JobContext,
    JobType,
    Outcome,
    checked_payload,
    stopped,
    wait_until_done,
)
from workerd.jobtypes.strays import STRAY_LIMIT, Stray, Strays
from workerd.latch import Latch
from workerd.output import CappedOutput

ENTRY_POINT_GROUP = "zeitplan.job_types"

PluginClass = Callable[[], JobType]


class PythonPluginJob:
    """Runs python payloads: {"entry_point": plug-in name, "args": {...}}."""

    def __init__(self, stray_limit: int = STRAY_LIMIT) -> None:
        # Looking entry points up reads every installed distribution: do it once per name.
        self._classes: dict[str, PluginClass] = {}
        self._helpers = HelperThreads()
        self._strays = Strays("python plug-in calls that ignored their cancel", stray_limit)

    def run(self, ctx: JobContext) -> Outcome:
        """Instantiate the named plug-in and run it; its failures become failed Outcomes."""
        payload = checked_payload("python", ctx)
        if isinstance(payload, Outcome):
            return payload
        name: str = payload["entry_point"]
        out = CappedOutput(ctx.emit, ctx.output_limit)
        try:
            plugin_class = self._find(name)
        except Exception as exc:
            out.write("stderr", traceback.format_exc().encode())
            return Outcome("failed", error=f"cannot load plug-in {name!r}: {_describe(exc)}")
        if plugin_class is None:
            return Outcome("failed", error=f"no plug-in {name!r} installed on this worker")
        stray = self._strays.track()
        if stray is None:
            return Outcome("failed", error=self._strays.refusal())
        return _run_plugin(plugin_class, payload["args"], ctx, out, self._helpers, stray)

    def _find(self, name: str) -> PluginClass | None:
        plugin_class = self._classes.get(name)
        if plugin_class is None:
            found = entry_points(group=ENTRY_POINT_GROUP, name=name)
            if not found:
                return None
            plugin_class = self._classes[name] = next(iter(found)).load()
        return plugin_class


class HelperThreads:
    """Daemon threads that run calls, an idle one reused when there is one; a call that
    never returns keeps its thread, and the next call gets a new one."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()

    def run(self, call: Callable[[], None]) -> None:
        """Start `call` on a helper thread; returns at once."""
        with self._lock:
            start = self._idle == 0
            if not start:
                self._idle -= 1
        self._calls.put(call)
        if start:
            threading.Thread(target=self._serve, name="plugin", daemon=True).start()

    def _serve(self) -> None:
        while True:
            self._calls.get()()
            with self._lock:
                self._idle += 1


def _run_plugin(plugin_class: PluginClass, args: dict[str, Any], ctx: JobContext,
                out: CappedOutput, helpers: HelperThreads, stray: Stray) -> Outcome:
    deadline = Deadline(ctx.timeout)
    inner = dataclasses.replace(ctx, payload=args, cancel=threading.Event(), emit=out.write)
    results: list[Outcome] = []
    done = Latch()  # the slot waits for it once per run: cheaper than an Event

    def target() -> None:
        try:
            outcome = plugin_class().run(inner)
            if not isinstance(outcome, Outcome):
                raise TypeError(f"run() returned {type(outcome).__name__}, not an Outcome")
            results.append(outcome)
        except BaseException as exc:  # the plug-in boundary: nothing it raises reaches the worker
            out.write("stderr", traceback.format_exc().encode())
            results.append(Outcome("failed", error=_describe(exc)))
        finally:
            done.set()
            stray.end()

    helpers.run(target)
    reason = wait_until_done(done, ctx, deadline)
    if reason is None:
        return results[0]
    inner.cancel.set()
    returned = done.wait(ctx.kill_grace)
    out.close()
    outcome = stopped(reason, deadline)
    if returned or not stray.abandon():
        return outcome
    return dataclasses.replace(
        outcome, error=f"{outcome.error}; the plug-in ignored it and was left running",
        leftover=stray)


def _describe(exc: BaseException) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
