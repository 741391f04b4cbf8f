"""ZooKeeper adapter: the one place that imports kazoo.

Membership (ephemeral nodes), leader election, the leadership epoch, per-job overlap
locks, the marks of durable cancellations (persistent nodes) and a lease that says
whether this process may still act as leader. kazoo's exceptions become
:class:`common.errors.CoordinationError` here.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    BadVersionError,
    ConnectionLoss,
    KazooException,
    NodeExistsError,
    NoNodeError,
)
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
        self._locks: dict[str, tuple[str, int | None]] = {}  # name -> (token, session)
        self._locks_guard = threading.Lock()
        self._risk_listeners: list[Callable[[], None]] = []
        self._cut = 0  # counts session changes: a lock-risk timer fires only if unchanged
        # The session the locks belong to, kept while disconnected (kazoo's client_id is
        # None then), None once it is lost.
        self._session: int | None = None
        # When the last request answered while locks were held was sent: the server heard
        # from this session then, so it expires it no sooner than a session timeout later.
        self._contact = 0.0
        self._stopping = threading.Event()
        # The election under way and the one thread that cancels it on a stop (see contend).
        self._election_lock = threading.Lock()
        self._election: Any = None
        self._cancel_on: threading.Event | None = None

    # -- session -----------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> None:
        """Connect; CoordinationError if no server answers within `timeout` seconds."""
        try:
            self._client.start(timeout=timeout)
            self._client.ensure_path(f"{self.root}/members")
            self._client.ensure_path(f"{self.root}/locks")
            self._client.ensure_path(f"{self.root}/cancelled")
        except (KazooTimeoutError, KazooException) as exc:
            self._client.stop()
            raise CoordinationError(f"cannot reach ZooKeeper: {exc or type(exc).__name__}") \
                from exc
        self._last_ok = time.monotonic()
        threading.Thread(target=self._keep_contact, name="zk-lock-contact", daemon=True).start()

    def stop(self) -> None:
        """Close the session (its ephemeral nodes go at once); never raises."""
        self._stopping.set()
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
            self._session = self.session_id
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
                self._session = None
        self._watch_locks(state)
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

        Returns when `lead` returns or `cancelled` is set before election. `cancelled` must
        be the same event on every call (the process's stop flag): one thread per process
        watches it and cancels the election under way, not a new thread per term.
        """
        election = self._client.Election(f"{self.root}/election", self.name)
        with self._election_lock:
            if self._cancel_on is None:
                self._cancel_on = cancelled
                threading.Thread(target=self._cancel_when_set, args=(cancelled,), daemon=True,
                                 name="election-cancel").start()
            elif self._cancel_on is not cancelled:
                raise ValueError("contend() takes the same cancel event on every call")
            self._election = election
            if cancelled.is_set():  # set before the watcher could see this election
                election.cancel()
        try:
            with _translate("take part in the election"):
                election.run(lead)
        finally:
            with self._election_lock:
                self._election = None

    def _cancel_when_set(self, cancelled: threading.Event) -> None:
        cancelled.wait()
        with self._election_lock:
            if self._election is not None:
                self._election.cancel()

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

    def watch_epoch(self, seen: Callable[[int], None]) -> None:
        """Call `seen(epoch)` (on a kazoo thread) with the newest leadership epoch, at once
        and after every new one. Returns without waiting: kazoo's data watch retries its
        read until ZooKeeper answers, and reads again after every reconnection."""
        def changed(_data: bytes | None, stat: Any) -> None:
            if stat is not None:  # None: no leader has taken an epoch yet
                seen(int(stat.mzxid))
        self._client.handler.spawn(self._client.DataWatch, f"{self.root}/epoch", changed)

    # -- overlap locks -----------------------------------------------------------------
    def try_lock(self, name: str, data: dict[str, Any]) -> bool:
        """Take the ephemeral lock `name` with `data`; False when another holds it (another
        session, or another attempt of this process).

        A node this session owns that no attempt here holds is this process's own: left by
        a create that ZooKeeper applied although its reply was lost with the connection
        (CoordinationError here, and a delete of it is sent at once). It is taken over,
        not mistaken for someone else's lock."""
        path = f"{self.root}/locks/{name}"
        token = uuid.uuid4().hex
        value = json.dumps({**data, "token": token}).encode()
        with self._locks_guard:
            if name in self._locks:
                return False
            self._locks[name] = (token, self._session)
        taken = False
        sent = time.monotonic()
        try:
            with _translate(f"take lock {name}"):
                taken = self._create_or_claim(path, value)
        except CoordinationError:
            self._delete_own(path, token, self._session)  # in case it was applied after all
            raise
        finally:
            with self._locks_guard:
                if taken:  # the session the node belongs to (a reconnect may have changed it)
                    self._locks[name] = (token, self._session)
                    self._contact = max(self._contact, sent)
                else:
                    self._locks.pop(name, None)
        return taken

    def _create_or_claim(self, path: str, value: bytes) -> bool:
        for _ in range(3):  # a release of our own node may race with taking it over
            try:
                self._client.create(path, value, ephemeral=True)
                return True
            except NodeExistsError:
                pass
            try:
                _, stat = self._client.get(path)
                if stat.ephemeralOwner != self._session:
                    return False
                self._client.set(path, value, version=stat.version)
                return True
            except (NoNodeError, BadVersionError):
                continue
        return False

    def release(self, name: str) -> threading.Event:
        """Release the lock `name` taken here, without waiting: the node is deleted only
        while it is still this session's and carries this holder's token (after a session
        expired, the node at that path may be another worker's); a request a broken
        connection lost is sent again; the node goes with the session anyway. The event
        returned is set once the release is settled (deleted, or nothing of ours left)."""
        with self._locks_guard:
            held = self._locks.pop(name, None)
        if held is None:
            settled = threading.Event()
            settled.set()
            return settled
        return self._delete_own(f"{self.root}/locks/{name}", *held)

    def _delete_own(self, path: str, token: str, session: int | None) -> threading.Event:
        settled = threading.Event()
        tries = 0

        def again(result: IAsyncResult) -> None:
            nonlocal tries
            if isinstance(result.exception, ConnectionLoss) and tries < RELEASE_TRIES \
                    and self._session == session:
                tries += 1
                read()
            else:
                settled.set()

        def read() -> None:
            self._client.get_async(path).rawlink(delete)

        def delete(result: IAsyncResult) -> None:
            if not result.successful():
                again(result)
                return
            found, stat = result.value
            # The session is compared once more when the delete is sent: after an
            # expiry kazoo would send it on the next session, which owns nothing here.
            if stat.ephemeralOwner == session == self._session \
                    and json.loads(found or b"{}").get("token") == token:
                self._client.delete_async(path, version=stat.version).rawlink(again)
            else:
                settled.set()
        if session is not None and self._session == session:
            read()
        else:
            settled.set()
        return settled

    def on_lock_risk(self, listener: Callable[[], None]) -> None:
        """Call `listener()` (on a helper thread) when the locks taken here may be lost:
        the session expired, or the connection has been down `lock_grace` seconds.

        kazoo declares a silent connection down (SUSPENDED) at most 2/3 T (T: the session
        timeout) after the last request the server received, and the server expires the
        session no sooner than T after the last request it received; while locks are held
        a request goes every T/6. Unless the session came back, the listener runs at the
        later of T/8 after SUSPENDED and 2/3 T after the last answered request was sent,
        so what runs under the locks has another T/8 to stop and T/12 remain before
        another session can take them; a reset connection (a node stopped, an election)
        has at least T/2 to come back. The bound assumes the negotiated timeout is T
        (ZooKeeper keeps it within 2 and 20 ticks)."""
        self._risk_listeners.append(listener)

    @property
    def lock_grace(self) -> float:
        """Seconds the work under a lock at risk has to stop (see :meth:`on_lock_risk`)."""
        return self.session_timeout / 8

    def holds(self, name: str) -> bool:
        """Whether lock `name` was taken here and its session is the current one, connected."""
        with self._locks_guard:
            held = self._locks.get(name)
        return held is not None and self._connected.is_set() and self._session == held[1]

    def _watch_locks(self, state: str) -> None:
        """On a session change: arm, disarm or fire the lock-risk listeners."""
        with self._locks_guard:
            self._cut += state != KazooState.SUSPENDED  # disarms an armed timer
            cut = self._cut
        if state == KazooState.SUSPENDED:
            # The later of T/8 after kazoo's notice and 2/3 T after the last contact: either
            # leaves 2 x T/8 to stop and T/12 to spare before the expiry (on_lock_risk).
            at = max(self.lock_grace, self._contact + self.session_timeout * 2 / 3
                     - time.monotonic())
            timer = threading.Timer(at, self._lock_risk, (cut,))
            timer.daemon = True
            timer.start()
        elif state == KazooState.LOST:  # whatever comes next: the locks are gone
            self._client.handler.spawn(self._lock_risk, None)

    def _keep_contact(self) -> None:
        """While locks are held, a round trip every T/6, so that a connection reset (a
        ZooKeeper node stopped, its leader re-elected) leaves the locks' work most of the
        session timeout to reconnect before it must stop."""
        every = self.session_timeout / 6
        while not self._stopping.wait(every):
            with self._locks_guard:
                holding = bool(self._locks)
            if holding and self._connected.is_set():
                sent = time.monotonic()
                try:
                    self._bounded(self._client.exists_async(self.root), "keep in touch", every)
                except CoordinationError:
                    continue
                self._contact = max(self._contact, sent)

    def _lock_risk(self, cut: int | None) -> None:
        with self._locks_guard:
            if cut is not None and cut != self._cut:  # the session came back in time
                return
        for listener in self._risk_listeners:
            listener()

    def holder(self, name: str) -> dict[str, Any] | None:
        """The data the holder of lock `name` took it with, or None when free."""
        found = self._bounded(self._client.get_async(f"{self.root}/locks/{name}"),
                              f"read lock {name}", missing_ok=True)
        if found is None:
            return None
        result: dict[str, Any] = json.loads(found[0] or b"{}")
        result.pop("token", None)
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

    # -- cancellation marks --------------------------------------------------------------
    # Each reply is awaited a third of the session timeout at most (as the lease's round
    # trip): the leader's pass over the marks holds its dispatch cycle no longer.
    def cancel_marks(self) -> set[str]:
        """The names of every cancellation mark (one request)."""
        return set(self._bounded(self._client.get_children_async(f"{self.root}/cancelled"),
                                 "list cancellations", self.session_timeout / 3))

    def add_cancel_marks(self, names: Iterable[str]) -> None:
        """Create the persistent marks `names` (those that exist already are left alone),
        sent together, then each reply awaited."""
        path = f"{self.root}/cancelled"
        sent = [(name, self._client.create_async(f"{path}/{name}")) for name in names]
        for name, result in sent:
            with _translate(f"mark {name} cancelled"), contextlib.suppress(NodeExistsError):
                result.get(timeout=self.session_timeout / 3)

    def remove_cancel_marks(self, names: Iterable[str]) -> None:
        """Delete the marks `names` (those already gone are fine), sent together."""
        path = f"{self.root}/cancelled"
        sent = [(name, self._client.delete_async(f"{path}/{name}")) for name in names]
        for name, result in sent:
            self._bounded(result, f"forget cancellation {name}", self.session_timeout / 3,
                          missing_ok=True)

    def watch_cancel_marks(self, changed: Callable[[list[str]], None]) -> None:
        """Call `changed(names)` with every mark now (before returning), then on kazoo's
        thread whenever one is added or removed, also after a new session (kazoo sets the
        watch again). CoordinationError when the first read fails."""
        with _translate("watch cancellations"):
            self._client.ChildrenWatch(f"{self.root}/cancelled", changed)

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
