"""Stop every live cluster at interpreter exit and on SIGTERM/SIGINT, then chain."""

from __future__ import annotations

import atexit
import os
import signal
import threading
import weakref
from types import FrameType
from typing import Protocol


class Stoppable(Protocol):
    """Anything with an idempotent stop()."""

    def stop(self) -> None:
        """Stop everything it started."""


_active: weakref.WeakSet[Stoppable] = weakref.WeakSet()
_previous: dict[int, object] = {}
_lock = threading.Lock()
_atexit_installed = False


def register(owner: Stoppable) -> None:
    """Stop `owner` at exit, and on SIGTERM/SIGINT when called from the main thread."""
    global _atexit_installed
    with _lock:
        _active.add(owner)
        if not _atexit_installed:
            atexit.register(stop_all)
            _atexit_installed = True
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                if signum not in _previous:
                    _previous[signum] = signal.signal(signum, _on_signal)


def unregister(owner: Stoppable) -> None:
    """Forget `owner` (it stopped on its own)."""
    with _lock:
        _active.discard(owner)


def stop_all() -> None:
    """Stop every registered owner."""
    for owner in list(_active):
        owner.stop()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    stop_all()
    previous = _previous.get(signum)
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        # The default action (terminate): reinstate it and deliver the signal again.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
