"""An example plug-in, installed as the python job type's `example.sleep_echo`.

With no args it does nothing at all, which makes it the benchmarks' no-op job.
"""

from __future__ import annotations

from workerd.jobtypes import JobContext, Outcome


class SleepEcho:
    """Args {"seconds": float = 0, "message": str = "", "fail": bool = False}.

    Emits the message as a line on stdout, sleeps (returning cancelled as soon as the run
    is cancelled), then succeeds, or fails if asked to.
    """

    def run(self, ctx: JobContext) -> Outcome:
        """Echo, sleep, then succeed or fail as the args say."""
        seconds = ctx.payload.get("seconds", 0)
        message = ctx.payload.get("message", "")
        fail = ctx.payload.get("fail", False)
        if type(seconds) not in (int, float) or seconds < 0:  # bool is an int: refused
            return Outcome("failed", error="'seconds' must be a number of seconds, 0 or more")
        if not isinstance(message, str):
            return Outcome("failed", error="'message' must be a string")
        if not isinstance(fail, bool):
            return Outcome("failed", error="'fail' must be true or false")
        if message:
            ctx.emit("stdout", message.encode() + b"\n")
        if seconds and ctx.cancel.wait(seconds):
            return Outcome("cancelled", error="cancelled")
        if fail:
            return Outcome("failed", error="failed as asked")
        return Outcome("succeeded")
