"""What a worker knows is cancelled, from two sources: the durable marks in ZooKeeper (all
of them, loaded before the worker takes work and kept current by a watch, so a restarted
worker knows every cancellation however old) and the control fanout's messages (the fast
path: they reach a running worker before the leader has written the mark, and are kept
`window` seconds)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from common.cancels import Target, parse, targets_of
from common.messages import CancelMessage, RunMessage

CANCEL_MEMORY = 3600.0  # seconds a fanout cancellation is kept (its mark normally follows)


class CancelMemory:
    """The cancellations of runs and jobs this worker must not start; thread-safe (marks
    change on kazoo's thread, fanout messages arrive on the broker thread, slots read)."""

    def __init__(self, window: float = CANCEL_MEMORY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._marks: frozenset[Target] = frozenset()
        self._heard: dict[Target, float] = {}  # -> until (clock)
        self._lock = threading.Lock()

    def set_marks(self, names: Iterable[str]) -> set[Target]:
        """Take the current set of durable marks (names that are not marks are ignored);
        returns the targets new to this worker (their attempts running here must stop)."""
        marks = frozenset(t for t in map(parse, names) if t is not None)
        with self._lock:
            new = set(marks - self._marks)
            self._marks = marks
        return new

    def hear(self, message: CancelMessage) -> None:
        """Note a cancellation from the control fanout (kept `window` seconds)."""
        now = self.clock()
        with self._lock:
            self._heard = {k: t for k, t in self._heard.items() if t > now}
            self._heard.update(dict.fromkeys(targets_of(message), now + self.window))

    def covers(self, message: RunMessage) -> bool:
        """Whether the run of `message`, or its job, is cancelled."""
        targets = (("job", message.job_id), ("run", message.run_id))
        now = self.clock()
        with self._lock:
            return any(t in self._marks or self._heard.get(t, 0.0) > now for t in targets)

