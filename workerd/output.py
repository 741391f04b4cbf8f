"""A run's output on its way to the schedulers: capped per stream and cut into chunks."""

from __future__ import annotations

import threading
from collections.abc import Callable

Emit = Callable[[str, bytes], None]

DEFAULT_OUTPUT_LIMIT = 1024 * 1024  # bytes kept per stream per run
MAX_CHUNK = 64 * 1024  # bytes per emitted chunk
FLUSH_INTERVAL = 0.5  # seconds buffered output may wait before it is emitted


def truncation_notice(limit: int) -> bytes:
    """The line emitted once on a stream whose output went past `limit` bytes."""
    return f"\n[zeitplan: output truncated after {limit} bytes]\n".encode()


class CappedOutput:
    """Forward output to `emit` in chunks of at most MAX_CHUNK, keeping `limit` bytes per stream.

    Past the limit a stream gets one truncation notice and the rest is dropped (the caller
    keeps reading, so the job never blocks on a full pipe). Calls to `emit` are serialised,
    so writers on several threads are safe; after `close` every write is dropped, so a
    thread left behind by a cancelled run cannot emit into the next one.
    """

    def __init__(self, emit: Emit, limit: int = DEFAULT_OUTPUT_LIMIT) -> None:
        self._emit = emit
        self._limit = limit
        self._sent: dict[str, int] = {}
        self._truncated: set[str] = set()
        self._closed = False
        self._lock = threading.Lock()

    def write(self, stream: str, data: bytes) -> None:
        """Emit `data` on `stream` as far as the stream's limit allows."""
        with self._lock:
            if self._closed or not data or stream in self._truncated:
                return
            sent = self._sent.get(stream, 0)
            kept = data[: self._limit - sent]
            for start in range(0, len(kept), MAX_CHUNK):
                self._emit(stream, kept[start : start + MAX_CHUNK])
            self._sent[stream] = sent + len(kept)
            if len(kept) < len(data):
                self._truncated.add(stream)
                self._emit(stream, truncation_notice(self._limit))

    def full(self, stream: str) -> bool:
        """Whether `stream` has reached its limit, so producing more output is wasted."""
        with self._lock:
            return self._closed or stream in self._truncated

    def close(self) -> None:
        """Drop every later write."""
        with self._lock:
            self._closed = True
