"""The fault proxy on its own, against a local echo server: forward, drop, blackhole, heal."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from common.devcluster import TcpProxy

pytestmark = pytest.mark.timeout(60)


class EchoServer:
    """Echoes every byte back; counts the connections it accepted."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self.closed_by_peer = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass
            self.closed_by_peer += 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[TcpProxy]:
    with TcpProxy(echo.port, name="echo") as p:
        yield p


def _connect(proxy: TcpProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=2.0)


def _round_trip(conn: socket.socket, payload: bytes) -> bytes:
    conn.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = conn.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def _closed_on_us(conn: socket.socket) -> bool:
    """True when the peer ended the connection (a reset or an orderly close)."""
    conn.settimeout(2.0)
    try:
        conn.sendall(b"?")
        return conn.recv(10) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def _refused(proxy: TcpProxy) -> bool:
    """True when a new connection through the proxy is reset at once (the kernel completes
    the handshake; the proxy then resets it, sometimes before connect() returns)."""
    try:
        conn = _connect(proxy)
    except ConnectionResetError:
        return True
    with conn:
        return _closed_on_us(conn)


def _wait(probe: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_the_proxy_forwards_bytes_both_ways_including_large_transfers(
        proxy: TcpProxy) -> None:
    with _connect(proxy) as conn:
        assert _round_trip(conn, b"hello") == b"hello"
        big = bytes(range(256)) * 8192  # 2 MiB: crosses the proxy's high-water mark
        assert _round_trip(conn, big) == big
    assert proxy.mode == "forward"


def test_a_client_closing_its_side_closes_the_upstream_connection(
        proxy: TcpProxy, echo: EchoServer) -> None:
    conn = _connect(proxy)
    assert _round_trip(conn, b"x") == b"x"
    conn.close()
    _wait(lambda: echo.closed_by_peer == 1 and proxy.connections == 0)


def test_drop_resets_open_connections_and_refuses_new_ones_until_heal(
        proxy: TcpProxy, echo: EchoServer) -> None:
    conn = _connect(proxy)
    assert _round_trip(conn, b"before") == b"before"
    proxy.drop()
    assert _closed_on_us(conn)
    conn.close()
    _wait(lambda: echo.closed_by_peer == 1)
    assert _refused(proxy)
    assert echo.accepted == 1
    proxy.heal()
    with _connect(proxy) as again:
        assert _round_trip(again, b"healed") == b"healed"


def test_blackhole_holds_connections_silently_and_heal_delivers_what_was_sent(
        proxy: TcpProxy, echo: EchoServer) -> None:
    conn = _connect(proxy)
    assert _round_trip(conn, b"one") == b"one"
    proxy.blackhole()
    conn.sendall(b"two")
    conn.settimeout(0.5)
    with pytest.raises(TimeoutError):
        conn.recv(10)
    late = _connect(proxy)  # accepted, but goes nowhere
    late.settimeout(0.5)
    late.sendall(b"three")
    with pytest.raises(TimeoutError):
        late.recv(10)
    assert echo.accepted == 1 and proxy.connections == 2
    proxy.heal()
    conn.settimeout(2.0)
    late.settimeout(2.0)
    assert conn.recv(10) == b"two"
    assert late.recv(10) == b"three"
    assert echo.accepted == 2
    conn.close()
    late.close()


def test_a_target_that_is_down_looks_like_a_refused_connection() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = int(probe.getsockname()[1])
    with TcpProxy(port, name="nowhere") as proxy:
        assert _refused(proxy)


def test_close_ends_every_connection_and_the_listener(proxy: TcpProxy) -> None:
    conn = _connect(proxy)
    assert _round_trip(conn, b"x") == b"x"
    proxy.close()
    conn.settimeout(2.0)
    assert conn.recv(10) == b""
    conn.close()
    with pytest.raises(OSError):
        _connect(proxy)
    proxy.close()  # idempotent
