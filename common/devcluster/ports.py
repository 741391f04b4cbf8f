"""Free 127.0.0.1 ports, and cheap TCP probes.

Ports are picked at random below the kernel's ephemeral range and checked free: a port the
kernel hands out for `bind(0)` comes from the range it also takes the source ports of
outgoing connections from, so between our check and the service's own bind, any of the
cluster's many client connections could take it (seen as "Address already in use").
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

HOST = "127.0.0.1"
LOWEST = 10000

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


def _ephemeral_floor() -> int:
    """The lowest port the kernel uses for ephemeral ports (32768 if unknown)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that are free on 127.0.0.1 right now."""
    return [free_port_range(1) for _ in range(count)]


def free_port_range(count: int) -> int:
    """The first of `count` consecutive ports that are all free right now."""
    top = _ephemeral_floor() - count
    if top <= LOWEST:
        raise OSError(f"no room below the ephemeral ports ({top + count}) for {count} ports")
    with _lock:
        for _ in range(500):
            first = random.randint(LOWEST, top)
            candidates = range(first, first + count)
            if _given.intersection(candidates):
                continue
            socks = [_bind(port) for port in candidates]
            for sock in socks:
                if sock is not None:
                    sock.close()
            if all(socks):
                _given.update(candidates)
                return first
    raise OSError(f"no {count} consecutive free ports found on {HOST}")


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
