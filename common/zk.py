"""ZooKeeper adapter: the one place that imports kazoo.

Membership (ephemeral nodes), leader election, the leadership epoch, per-job overlap
locks and a lease that says whether this process may still act as leader. kazoo's
exceptions become :class:`common.errors.CoordinationError` here.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import ConnectionLoss, KazooException, NodeExistsError, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.interfaces import IAsyncResult
from kazoo.retry import KazooRetry

from common.errors import CoordinationError

RELEASE_TRIES = 50  # re-sends of a lock release whose reply a broken connection lost


class Coordinator:
    """A ZooKeeper session for one daemon, rooted at `root` (for example ``/zeitplan``).

    kazoo queues a request while its connection is being re-established and waits for the
    reply without a limit; here a call that may be retried later waits `session_timeout`
    at most (CoordinationError), so no loop of a daemon hangs on a ZooKeeper outage.
    """

    def __init__(self, hosts: str, *, root: str, session_timeout: float, name: str) -> None:
        self.root = root
        self.name = name
        self.session_timeout = session_timeout
        self._client = KazooClient(
            hosts=hosts, timeout=session_timeout,
            connection_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=1.0),
            command_retry=KazooRetry(max_tries=3, delay=0.1, max_delay=1.0))
        self._client.add_listener(self._on_state)
        self._connected = threading.Event()
        self._lost = threading.Event()     # the session ended; members need re-creating
        self.losses = 0                    # sessions lost so far (a leader's term ends)
        self._last_ok = 0.0
        self._members: dict[str, bytes] = {}
        self._listeners: list[Callable[[str], None]] = []

    # -- session -----------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> None:
        """Connect; CoordinationError if no server answers within `timeout` seconds."""
        try:
            self._client.start(timeout=timeout)
            self._client.ensure_path(f"{self.root}/members")
            self._client.ensure_path(f"{self.root}/locks")
        except (KazooTimeoutError, KazooException) as exc:
            self._client.stop()
            raise CoordinationError(f"cannot reach ZooKeeper: {exc or type(exc).__name__}") \
                from exc
        self._last_ok = time.monotonic()

    def stop(self) -> None:
        """Close the session (its ephemeral nodes go at once); never raises."""
        try:
            self._client.stop()
            self._client.close()
        except Exception:  # noqa: BLE001 - closing a broken session may fail any way
            pass

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call `listener("connected"|"suspended"|"lost")` on session changes (kazoo thread)."""
        self._listeners.append(listener)

    def _on_state(self, state: str) -> None:
        if state == KazooState.CONNECTED:
            self._connected.set()
            self._last_ok = time.monotonic()
            if self._lost.is_set():
                self._lost.clear()
                # A new session: our ephemeral nodes are gone; put them back from a thread
                # (kazoo forbids blocking calls inside a listener).
                self._client.handler.spawn(self._reregister)
        else:
            self._connected.clear()
            if state == KazooState.LOST:
                self.losses += 1
                self._lost.set()
        for listener in self._listeners:
            listener(str(state).lower())

    def lease_valid(self) -> bool:
        """True while connected and a round trip succeeded within a third of the session
        timeout: a process that was paused or cut off must not act on old leadership."""
        return (self._connected.is_set()
                and time.monotonic() - self._last_ok < self.session_timeout / 3)

    def touch(self) -> bool:
        """One round trip to renew the lease; False when ZooKeeper did not answer."""
        try:
            self._bounded(self._client.exists_async(self.root), "renew the lease",
                          self.session_timeout / 3)
        except CoordinationError:
            return False
        self._last_ok = time.monotonic()
        return True

    @property
    def session_id(self) -> int | None:
        """The current session id (None when not connected)."""
        client_id = self._client.client_id
        return int(client_id[0]) if client_id else None

    # -- membership --------------------------------------------------------------------
    def register(self, kind: str, data: dict[str, Any], timeout: float | None = None) -> None:
        """Publish this process as an ephemeral member `kind/name` with `data` (JSON),
        waiting `timeout` seconds (the session timeout) at most for each request."""
        path = f"{self.root}/members/{kind}/{self.name}"
        value = json.dumps(data).encode()
        self._members[path] = value
        if self._bounded(self._client.set_async(path, value), "register", timeout,
                         missing_ok=True) is None:
            self._bounded(self._client.create_async(path, value, ephemeral=True,
                                                    makepath=True), "register", timeout)

    def _reregister(self) -> None:
        for path, value in self._members.items():
            try:
                self._client.create(path, value, ephemeral=True, makepath=True)
            except NodeExistsError:
                pass
            except (KazooException, KazooTimeoutError):
                return

    def members(self, kind: str) -> dict[str, dict[str, Any]]:
        """Every live member of `kind` with its data."""
        base = f"{self.root}/members/{kind}"
        out: dict[str, dict[str, Any]] = {}
        reads = {name: self._client.get_async(f"{base}/{name}")
                 for name in self.member_names(kind)}
        for name, read in reads.items():
            found = self._bounded(read, "list members", missing_ok=True)
            if found is not None:
                out[name] = json.loads(found[0] or b"{}")
        return out

    def member_names(self, kind: str) -> list[str]:
        """The names of every live member of `kind` (one request, no data read)."""
        names = self._bounded(self._client.get_children_async(f"{self.root}/members/{kind}"),
                              "list members", missing_ok=True)
        return list(names or [])

    # -- leadership --------------------------------------------------------------------
    def contend(self, lead: Callable[[], None], cancelled: threading.Event) -> None:
        """Wait to be elected, run `lead()` while leader, resign when it returns.

        Returns when `lead` returns or `cancelled` is set before election.
        """
        election = self._client.Election(f"{self.root}/election", self.name)

        def watch_cancel() -> None:
            cancelled.wait()
            election.cancel()
        threading.Thread(target=watch_cancel, daemon=True, name="election-cancel").start()
        with _translate("take part in the election"):
            election.run(lead)

    def leader_name(self) -> str | None:
        """The identifier of the current leader, if any."""
        with _translate("read the election"):
            try:
                contenders = self._client.Election(f"{self.root}/election").contenders()
            except NoNodeError:
                return None
        return str(contenders[0]) if contenders else None

    def new_epoch(self) -> int:
        """A leadership epoch larger than every earlier one (the zxid of a write)."""
        path = f"{self.root}/epoch"
        with _translate("take a new epoch"):
            self._client.ensure_path(path)
            stat = self._client.set(path, self.name.encode())
        self._last_ok = time.monotonic()
        return int(stat.mzxid)

    # -- overlap locks -----------------------------------------------------------------
    def try_lock(self, name: str, data: dict[str, Any]) -> bool:
        """Take the ephemeral lock `name`; False when someone holds it."""
        with _translate(f"take lock {name}"):
            try:
                self._client.create(f"{self.root}/locks/{name}", json.dumps(data).encode(),
                                    ephemeral=True)
                return True
            except NodeExistsError:
                return False

    def release(self, name: str) -> None:
        """Release the lock `name` if this session holds it, without waiting: ZooKeeper
        applies the delete in order with this session's later requests (so a lock taken
        again here comes after it), as soon as the connection allows; a delete whose reply
        a broken connection lost is sent again; the node goes with the session anyway."""
        path = f"{self.root}/locks/{name}"
        session = self.session_id
        tries = 0

        def settled(result: IAsyncResult) -> None:
            nonlocal tries
            if isinstance(result.exception, ConnectionLoss) and tries < RELEASE_TRIES \
                    and self.session_id == session:
                tries += 1
                self._client.delete_async(path).rawlink(settled)
        self._client.delete_async(path).rawlink(settled)

    def holder(self, name: str) -> dict[str, Any] | None:
        """The data of the holder of lock `name`, or None when free."""
        found = self._bounded(self._client.get_async(f"{self.root}/locks/{name}"),
                              f"read lock {name}", missing_ok=True)
        if found is None:
            return None
        result: dict[str, Any] = json.loads(found[0] or b"{}")
        return result

    def wait_free(self, name: str, timeout: float, stop: threading.Event) -> bool:
        """Wait until lock `name` is free (True) or `timeout`/`stop` (False)."""
        freed = threading.Event()
        with _translate(f"watch lock {name}"):
            if self._client.exists(f"{self.root}/locks/{name}",
                                   watch=lambda _event: freed.set()) is None:
                return True
        deadline = time.monotonic() + timeout
        while not stop.is_set() and time.monotonic() < deadline:
            if freed.wait(0.2):
                freed.clear()
                with _translate(f"watch lock {name}"):
                    if self._client.exists(f"{self.root}/locks/{name}",
                                           watch=lambda _event: freed.set()) is None:
                        return True
        return False

    def _bounded(self, result: IAsyncResult, doing: str, timeout: float | None = None, *,
                 missing_ok: bool = False) -> Any:
        """The result of a request, waiting `timeout` (the session timeout) at most; None
        for a node that does not exist when `missing_ok`."""
        with _translate(doing):
            try:
                return result.get(timeout=timeout or self.session_timeout)
            except NoNodeError:
                if missing_ok:
                    return None
                raise


@contextmanager
def _translate(doing: str) -> Iterator[None]:
    try:
        yield
    except (KazooException, KazooTimeoutError) as exc:
        raise CoordinationError(f"cannot {doing}: {type(exc).__name__} {exc}".strip()) from exc
