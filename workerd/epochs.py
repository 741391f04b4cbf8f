"""The newest leadership epoch a worker has seen, from ZooKeeper or from any run message.

A run message carries the epoch of the term that published it. One older than an epoch
the worker has seen may come from a deposed leader (paused between its commit and its
publish, say) whose runs the new leader has published again: the worker drops it unstarted
and reports it, and the schedulers publish a fresh copy if the run still needs one.
"""

from __future__ import annotations

import threading


class Epochs:
    """The newest epoch seen; updated from the ZooKeeper watch and the broker thread."""

    def __init__(self) -> None:
        self._newest = 0
        self._lock = threading.Lock()

    @property
    def newest(self) -> int:
        """The newest epoch seen so far (0 before any)."""
        return self._newest

    def see(self, epoch: int) -> None:
        """Note an epoch seen (an older one changes nothing)."""
        if epoch > self._newest:
            with self._lock:
                self._newest = max(self._newest, epoch)

    def stale(self, epoch: int) -> bool:
        """Note `epoch` (a run message's), and say whether it is older than one seen."""
        self.see(epoch)
        return epoch < self._newest
