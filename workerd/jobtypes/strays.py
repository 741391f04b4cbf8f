"""Helper threads that outlive their attempt, counted and capped.

A python plug-in that ignores its cancel, or an HTTP request past its timeout, cannot be
stopped from outside its thread: the attempt ends without it and the thread is left to
finish. Each such *stray* is counted until its call returns; at the limit the job type
refuses new attempts (a failed outcome saying why) instead of piling up threads. The
attempt keeps its job's overlap lock until the stray ends (`Stray.when_ended`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

STRAY_LIMIT = 8  # strays of one job type a worker tolerates before refusing that type


class Stray:
    """One helper call: ended by its thread, possibly abandoned by its attempt first."""

    def __init__(self, pen: Strays) -> None:
        self._pen = pen
        self._ended = False
        self._abandoned = False
        self._callbacks: list[Callable[[], None]] = []

    def end(self) -> None:
        """The call returned (called by the helper thread, last)."""
        with self._pen.guard:
            self._ended = True
            if self._abandoned:
                self._pen.count -= 1
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def abandon(self) -> bool:
        """The attempt ends without the call; True when the call is in fact still running
        (it is counted as a stray until it ends)."""
        with self._pen.guard:
            if self._ended or self._abandoned:
                return not self._ended
            self._abandoned = True
            self._pen.count += 1
            return True

    def when_ended(self, callback: Callable[[], None]) -> None:
        """Call `callback()` once the call has returned (at once if it has)."""
        with self._pen.guard:
            if not self._ended:
                self._callbacks.append(callback)
                return
        callback()


class Strays:
    """The strays of one job type on this worker, at most `limit` at once."""

    def __init__(self, what: str, limit: int = STRAY_LIMIT) -> None:
        self.what = what
        self.limit = limit
        self.count = 0  # under guard
        self.guard = threading.Lock()

    def track(self) -> Stray | None:
        """A Stray for a new call, or None when `limit` strays still run (refuse the
        attempt: see :meth:`refusal`)."""
        with self.guard:
            if self.count >= self.limit:
                return None
        return Stray(self)

    def refusal(self) -> str:
        """Why an attempt is refused at the limit."""
        return (f"refused: {self.count} {self.what} left running by earlier attempts still "
                f"run on this worker (limit {self.limit}); another worker may take the retry")
