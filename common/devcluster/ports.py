"""Free 127.0.0.1 ports, chosen by the kernel, and cheap TCP probes."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

HOST = "127.0.0.1"

# Ports handed out by this process but maybe not bound yet by their service: never twice.
_given: set[int] = set()
_lock = threading.Lock()


def _bind(port: int) -> socket.socket | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((HOST, port))
    except OSError:
        sock.close()
        return None
    return sock


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that are free on 127.0.0.1 right now."""
    with _lock, contextlib.ExitStack() as held:
        ports: list[int] = []
        while len(ports) < count:
            sock = held.enter_context(_bind_any())
            port = int(sock.getsockname()[1])
            if port not in _given:
                ports.append(port)
        _given.update(ports)
        return ports


def free_port_range(count: int) -> int:
    """The first of `count` consecutive ports that are all free right now."""
    with _lock:
        for _ in range(200):
            with _bind_any() as probe:
                first = int(probe.getsockname()[1])
            candidates = range(first, first + count)
            if first + count > 65535 or _given.intersection(candidates):
                continue
            socks = [_bind(port) for port in candidates]
            for sock in socks:
                if sock is not None:
                    sock.close()
            if all(socks):
                _given.update(candidates)
                return first
    raise OSError(f"no {count} consecutive free ports found on {HOST}")


@contextlib.contextmanager
def _bind_any() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((HOST, 0))
        yield sock
    finally:
        sock.close()


def accepts(port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def ask(port: int, request: bytes, timeout: float = 1.0, *, until_close: bool = True) -> bytes:
    """Send `request` and read the reply: until the peer closes, or just its first chunk.

    Returns what arrived before an error or the timeout (b"" when unreachable).
    """
    chunks: list[bytes] = []
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as conn:
            conn.sendall(request)
            while chunk := conn.recv(4096):
                chunks.append(chunk)
                if not until_close:
                    break
    except OSError:
        pass
    return b"".join(chunks)
