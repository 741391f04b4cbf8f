"""A TCP proxy that can cut one process off a service without touching either of them.

The fault tests put one proxy between a daemon and each node it talks to (ZooKeeper,
RabbitMQ, PostgreSQL) and then, on command:

- ``drop()``: close every current connection (with a reset) and refuse new ones, like a
  host that went away or a firewall that rejects;
- ``blackhole()``: keep the connections open but move no byte in either direction, and
  accept new connections that go nowhere, like a partition that drops packets. Nothing
  is read meanwhile, so, as with TCP retransmission, what was sent arrives after ``heal()``
  if both ends still hold the connection then;
- ``heal()``: forward again.

One selector thread serves every connection of one proxy.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

Mode = Literal["forward", "blackhole", "drop"]
HOST = "127.0.0.1"
_CHUNK = 64 * 1024
_HIGH_WATER = 256 * 1024  # stop reading a side while this much waits for the other side
_CONNECT_TIMEOUT = 2.0


@dataclass(eq=False)
class _Pipe:
    """One proxied connection: the client's socket and ours to the target."""

    client: socket.socket
    upstream: socket.socket
    to_upstream: bytearray = field(default_factory=bytearray)
    to_client: bytearray = field(default_factory=bytearray)
    client_eof: bool = False
    upstream_eof: bool = False
    upstream_shut: bool = False
    client_shut: bool = False


class TcpProxy:
    """Listens on a free 127.0.0.1 port and forwards each connection to `target`."""

    def __init__(self, target: tuple[str, int] | int, *, name: str = "proxy") -> None:
        self.target = (HOST, target) if isinstance(target, int) else target
        self.name = name
        self._mode: Mode = "forward"
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, 0))
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.port = int(self._listener.getsockname()[1])
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._pipes: set[_Pipe] = set()
        self._owner: dict[socket.socket, _Pipe] = {}
        self._held: list[socket.socket] = []  # accepted while blackholed: going nowhere
        self._commands: list[tuple[Callable[[], None], threading.Event]] = []
        self._lock = threading.Lock()
        self._closed = False
        self.accepted = 0
        self._selector.register(self._listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._serve, name=f"proxy-{name}", daemon=True)
        self._thread.start()

    # -- commands (any thread) ------------------------------------------------------------
    @property
    def address(self) -> str:
        """``127.0.0.1:port`` of the listening side."""
        return f"{HOST}:{self.port}"

    @property
    def mode(self) -> Mode:
        """forward, blackhole or drop."""
        return self._mode

    @property
    def connections(self) -> int:
        """Connections open through the proxy now (held blackholed ones included)."""
        return len(self._pipes) + len(self._held)

    def drop(self) -> None:
        """Reset every connection now and refuse new ones until heal()."""
        self._call(self._do_drop)

    def blackhole(self) -> None:
        """Stop moving bytes both ways; new connections are accepted and go nowhere."""
        self._call(lambda: self._set_mode("blackhole"))

    def heal(self) -> None:
        """Forward again (connections held while blackholed are connected to the target)."""
        self._call(self._do_heal)

    def close(self) -> None:
        """Close the listener and every connection; idempotent."""
        if self._closed:
            return
        self._call(self._do_close)
        self._thread.join(5.0)
        self._wake_w.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _call(self, action: Callable[[], None]) -> None:
        """Run `action` on the selector thread and wait until it has been applied."""
        done = threading.Event()
        with self._lock:
            if self._closed:
                return
            self._commands.append((action, done))
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if not done.wait(10.0):
            raise TimeoutError(f"proxy {self.name}: command not applied within 10 s")

    # -- the selector thread --------------------------------------------------------------
    def _serve(self) -> None:
        while not self._closed:
            for key, events in self._selector.select(timeout=1.0):
                if key.data == "wake":
                    self._run_commands()
                elif key.data == "accept":
                    self._accept()
                else:
                    self._io(key.fileobj, events)  # type: ignore[arg-type]
        self._selector.close()

    def _run_commands(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass
        with self._lock:
            commands, self._commands = self._commands, []
        for action, done in commands:
            try:
                action()
            finally:
                done.set()

    def _set_mode(self, mode: Mode) -> None:
        self._mode = mode
        for pipe in list(self._pipes):
            self._update(pipe)

    def _do_drop(self) -> None:
        self._mode = "drop"
        for pipe in list(self._pipes):
            self._close_pipe(pipe, reset=True)
        for sock in self._held:
            _reset(sock)
        self._held.clear()

    def _do_heal(self) -> None:
        held, self._held = self._held, []
        self._set_mode("forward")
        for sock in held:
            self._connect(sock)

    def _do_close(self) -> None:
        self._closed = True
        for pipe in list(self._pipes):
            self._close_pipe(pipe, reset=False)
        for sock in self._held:
            sock.close()
        self._held.clear()
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self._listener)
        self._listener.close()
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self._wake_r)
        self._wake_r.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.accepted += 1
            if self._mode == "drop":
                _reset(sock)
            elif self._mode == "blackhole":
                self._held.append(sock)
            else:
                self._connect(sock)

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=_CONNECT_TIMEOUT)
        except OSError:
            _reset(client)  # the target is down: the client sees a refused connection
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pipe = _Pipe(client, upstream)
        self._pipes.add(pipe)
        self._owner[client] = pipe
        self._owner[upstream] = pipe
        self._update(pipe)

    def _io(self, sock: socket.socket, events: int) -> None:
        pipe = self._owner.get(sock)
        if pipe is None:
            return
        is_client = sock is pipe.client
        try:
            if events & selectors.EVENT_WRITE:
                out = pipe.to_client if is_client else pipe.to_upstream
                sent = sock.send(out)
                del out[:sent]
            if events & selectors.EVENT_READ:
                data = sock.recv(_CHUNK)
                if not data:
                    if is_client:
                        pipe.client_eof = True
                    else:
                        pipe.upstream_eof = True
                elif is_client:
                    pipe.to_upstream += data
                else:
                    pipe.to_client += data
            self._half_close(pipe)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close_pipe(pipe, reset=True)
            return
        if pipe.client_shut and pipe.upstream_shut:
            self._close_pipe(pipe, reset=False)
        elif pipe in self._pipes:
            self._update(pipe)

    def _half_close(self, pipe: _Pipe) -> None:
        """Pass an end of stream on once everything before it has been delivered."""
        if pipe.client_eof and not pipe.to_upstream and not pipe.upstream_shut:
            pipe.upstream_shut = True
            pipe.upstream.shutdown(socket.SHUT_WR)
        if pipe.upstream_eof and not pipe.to_client and not pipe.client_shut:
            pipe.client_shut = True
            pipe.client.shutdown(socket.SHUT_WR)

    def _update(self, pipe: _Pipe) -> None:
        """Register each socket of `pipe` for what it may do now (nothing while blackholed)."""
        forwarding = self._mode == "forward"
        for sock, inbound, outbound, eof in (
                (pipe.client, pipe.to_upstream, pipe.to_client, pipe.client_eof),
                (pipe.upstream, pipe.to_client, pipe.to_upstream, pipe.upstream_eof)):
            events = 0
            if forwarding:
                if not eof and len(inbound) < _HIGH_WATER:
                    events |= selectors.EVENT_READ
                if outbound:
                    events |= selectors.EVENT_WRITE
            try:
                registered = self._selector.get_key(sock).events
            except KeyError:
                registered = 0
            if events == registered:
                continue
            if not events:
                self._selector.unregister(sock)
            elif registered:
                self._selector.modify(sock, events, "pipe")
            else:
                self._selector.register(sock, events, "pipe")

    def _close_pipe(self, pipe: _Pipe, *, reset: bool) -> None:
        self._pipes.discard(pipe)
        for sock in (pipe.client, pipe.upstream):
            self._owner.pop(sock, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
            if reset:
                _reset(sock)
            else:
                sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a host that refuses would answer."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
