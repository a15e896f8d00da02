"""Leases: one shared keepalive stream (:class:`LeaseKeeper`) and a self-renewing
:class:`Session` for the coordinator's own lease.

``LeaseKeeper`` keeps ONE long-lived ``LeaseKeepAlive`` bidirectional stream
(python3-etcd3's ``refresh_lease`` opens a stream per call) and multiplexes
any number of refreshes over it: the coordinator refreshes every agent's lease
on each heartbeat that agent sends, from any replica. Responses come back in
request order per lease id, so pending refreshes are matched FIFO per id.

``Session`` is a lease kept alive by a background thread every TTL/3, its
keepalives pipelined (a slow link delays answers, not renewals).

Invariants:
- a refresh answering TTL <= 0 means the lease is gone: ``refresh`` returns 0
  and a session goes LOST at once;
- a session goes SUSPENDED when refreshes fail, and LOST when its local
  deadline (send time of the last successful refresh + granted TTL, a lower
  bound of the server-side expiry) passes; LOST is final, callbacks run once;
- ``close()`` is idempotent and revokes the lease (best effort), so keys on it
  vanish at once instead of after the TTL.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import grpc
from etcd3 import etcdrpc

from workhive.coordinator.etcd.client import MIN_LEASE_TTL, EtcdClient
from workhive.coordinator.etcd.errors import EtcdUnavailable, InvalidArgument, LeaseLost

log = logging.getLogger(__name__)

_STOP = object()
ANSWER_POLL = 0.05  # seconds between looks at a session's unanswered keepalives
FAILOVER_POLL = 0.1  # seconds between checks for a client failover while awaiting a keepalive


class _Stream:
    """One open LeaseKeepAlive call with its request queue and reader thread."""

    def __init__(self, keeper: LeaseKeeper) -> None:
        self.keeper = keeper
        self.requests: queue.Queue[object] = queue.Queue()
        self.generation = keeper.client.generation
        self.pending: dict[int, collections.deque[Future[int]]] = collections.defaultdict(
            collections.deque
        )
        self.lock = threading.Lock()
        self.dead = False
        self.channel = (
            keeper.client.private_channel(keeper.rotation) if keeper.own_connection else None
        )
        stub = etcdrpc.LeaseStub(self.channel or keeper.client.channel())
        self.call: Any = stub.LeaseKeepAlive(self._iter())
        self.reader = threading.Thread(target=self._read, name="etcd-lease-keepalive", daemon=True)
        self.reader.start()

    def _iter(self) -> Iterator[Any]:
        while True:
            item = self.requests.get()
            if item is _STOP:
                return
            yield item

    def send(self, lease_id: int) -> Future[int]:
        fut: Future[int] = Future()
        with self.lock:
            if self.dead:
                fut.set_exception(EtcdUnavailable("keepalive stream closed"))
                return fut
            self.pending[lease_id].append(fut)
        self.requests.put(etcdrpc.LeaseKeepAliveRequest(ID=lease_id))
        return fut

    def _read(self) -> None:
        err: BaseException = EtcdUnavailable("keepalive stream ended")
        try:
            for resp in self.call:
                with self.lock:
                    q = self.pending.get(int(resp.ID))
                    fut = q.popleft() if q else None
                if fut is not None and not fut.done():
                    fut.set_result(int(resp.TTL))
        except grpc.RpcError as e:
            err = EtcdUnavailable(f"keepalive stream: {e.code().name}")
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                self.keeper.client.failover(self.generation)
        except Exception as e:  # pragma: no cover - defensive
            err = EtcdUnavailable(f"keepalive stream: {e!r}")
        self.kill(err)

    def kill(self, err: BaseException | None = None) -> None:
        with self.lock:
            if self.dead:
                return
            self.dead = True
            pending = [f for q in self.pending.values() for f in q]
            self.pending.clear()
        self.requests.put(_STOP)
        with contextlib.suppress(Exception):
            self.call.cancel()
        if self.channel is not None:
            with contextlib.suppress(Exception):
                self.channel.close()
        for f in pending:
            if not f.done():
                f.set_exception(err or EtcdUnavailable("keepalive stream closed"))


class LeaseKeeper:
    """Grants, refreshes (over one shared stream) and revokes leases.

    Thread-safe. ``refresh`` returns the remaining TTL in seconds; 0 means the
    lease does not exist any more (expired or revoked). Raises
    :class:`EtcdUnavailable` when etcd did not answer within ``timeout``.
    """

    def __init__(self, client: EtcdClient, *, own_connection: bool = False) -> None:
        """``own_connection``: keep the stream on a TCP connection of its own
        (``EtcdClient.private_channel``), moved to the next endpoint when it
        stops answering, without failing the client's other calls over."""
        self.client = client
        self.own_connection = own_connection
        self.rotation = 0  # endpoints past the client's current one (own connection)
        self._lock = threading.Lock()
        self._stream: _Stream | None = None
        self._closed = False

    def grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds (>= 2); returns its id."""
        lease_id, _ = self.client.lease_grant(ttl)
        return lease_id

    def revoke(self, lease_id: int) -> bool:
        """Revoke: every key on the lease is deleted now. False if already gone."""
        return self.client.lease_revoke(lease_id)

    def send(self, lease_id: int) -> Future[int]:
        """One keepalive on the shared stream, not waited for: the future
        holds the remaining TTL (0 = gone) or :class:`EtcdUnavailable`."""
        return self._current().send(lease_id)

    def abandon_stream(self) -> None:
        """Give up on the current stream (it stopped answering): kill it and
        move the client to its next endpoint; the next send opens a new one."""
        with self._lock:
            s = self._stream
        if s is None:
            return
        s.kill(EtcdUnavailable("keepalive stream stopped answering"))
        if self.own_connection:
            self.rotation += 1
        else:
            self.client.failover(s.generation)

    def _current(self) -> _Stream:
        with self._lock:
            if self._closed:
                raise EtcdUnavailable("lease keeper closed")
            s = self._stream
            if s is None or s.dead or s.generation != self.client.generation:
                if s is not None:
                    s.kill()
                s = self._stream = _Stream(self)
            return s

    def refresh(self, lease_id: int, *, timeout: float | None = None) -> int:
        """Keep ``lease_id`` alive once; remaining TTL (0 = gone)."""
        return self.refresh_many([lease_id], timeout=timeout)[lease_id]

    def refresh_many(
        self, lease_ids: Iterable[int], *, timeout: float | None = None
    ) -> dict[int, int]:
        """Refresh many leases in one go over the shared stream."""
        deadline = time.monotonic() + (self.client.timeout if timeout is None else timeout)
        stream = self._current()
        futs = {lid: stream.send(lid) for lid in lease_ids}
        out: dict[int, int] = {}
        for lid, fut in futs.items():
            out[lid] = max(0, self._answer(stream, lid, fut, deadline))
        return out

    def _answer(self, stream: _Stream, lid: int, fut: Future[int], deadline: float) -> int:
        """The TTL ``fut`` answers by ``deadline``. Gives up early when the
        client failed over meanwhile (its other calls found the endpoint
        dead: a stream on a connection of its own would otherwise wait out
        the whole deadline while the lease runs down)."""
        while True:
            left = deadline - time.monotonic()
            try:
                return fut.result(timeout=max(0.0, min(FAILOVER_POLL, left)))
            except FutureTimeout:
                if stream.generation != self.client.generation:
                    stream.kill(EtcdUnavailable("the etcd client failed over"))
                    raise EtcdUnavailable(f"lease keepalive for {lid:x}: endpoint left") from None
                if left <= FAILOVER_POLL:
                    stream.kill(EtcdUnavailable("keepalive timed out"))
                    self.client.failover(stream.generation)
                    raise EtcdUnavailable(f"lease keepalive for {lid:x} timed out") from None

    def close(self) -> None:
        """Close the stream (idempotent). Leases are not revoked."""
        with self._lock:
            self._closed = True
            s, self._stream = self._stream, None
        if s is not None:
            s.kill()


class SessionState(enum.Enum):
    """Connection state of a session (kazoo's CONNECTED/SUSPENDED/LOST)."""

    CONNECTED = "connected"
    SUSPENDED = "suspended"  # refreshes failing, lease may still be alive
    LOST = "lost"  # lease expired, revoked, or closed


class Session:
    """A lease renewed in the background every TTL/3 until closed or lost.

    Args:
        client: the etcd client.
        ttl: lease TTL in seconds (>= 2).
        keeper: share a :class:`LeaseKeeper` stream (one is made otherwise).
        clock: injected monotonic clock.
        on_state: called with each new :class:`SessionState` (from the
            keepalive thread; keep it short).
    """

    def __init__(
        self,
        client: EtcdClient,
        *,
        ttl: int = 10,
        keeper: LeaseKeeper | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_state: Callable[[SessionState], None] | None = None,
    ) -> None:
        if ttl < MIN_LEASE_TTL:
            raise InvalidArgument(f"session TTL {ttl}s is below etcd's minimum of {MIN_LEASE_TTL}s")
        self.client = client
        self.ttl = ttl
        self._own_keeper = keeper is None
        self.keeper = keeper or LeaseKeeper(client)
        self._clock = clock
        self._callbacks: list[Callable[[SessionState], None]] = [on_state] if on_state else []
        self._state = SessionState.CONNECTED
        self._state_lock = threading.Lock()
        self.lost = threading.Event()
        self._stop = threading.Event()
        self.lease_id = self.keeper.grant(ttl)
        self._deadline = clock() + ttl
        self._thread = threading.Thread(
            target=self._run, name=f"etcd-session-{self.lease_id:x}", daemon=True
        )
        self._thread.start()

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def alive(self) -> bool:
        """True while the lease is believed alive (CONNECTED or SUSPENDED)."""
        return not self.lost.is_set()

    def add_listener(self, cb: Callable[[SessionState], None]) -> None:
        self._callbacks.append(cb)

    def check(self) -> None:
        """Raise :class:`LeaseLost` if the session is lost."""
        if self.lost.is_set():
            raise LeaseLost(f"session lease {self.lease_id:x} lost")

    def _set(self, state: SessionState) -> None:
        with self._state_lock:
            if self._state is state or self._state is SessionState.LOST:
                return
            self._state = state
            if state is SessionState.LOST:
                self.lost.set()
        for cb in list(self._callbacks):
            try:
                cb(state)
            except Exception:  # pragma: no cover - listener bug must not kill keepalive
                log.exception("session listener failed")

    def _run(self) -> None:
        """Send a keepalive every TTL/3 (TTL/9 while SUSPENDED) without waiting
        for the previous answer: etcd renews a lease when a keepalive arrives,
        so a slow link (seconds of delay) only delays the answers, and the
        renewals still come in time. Answers are taken in order as they come;
        the stream is abandoned (``LeaseKeeper.abandon_stream``: the next one
        goes to another endpoint) only when its oldest keepalive has gone
        unanswered for TTL/2, which leaves time to renew there before the
        lease runs out."""
        interval = self.ttl / 3.0
        patience = self.ttl / 2.0
        inflight: collections.deque[tuple[float, Future[int]]] = collections.deque()
        next_send = self._clock() + interval
        while True:
            now = self._clock()
            wait = max(0.0, next_send - now)
            if inflight:
                wait = min(wait, ANSWER_POLL)
            if self._stop.wait(wait):
                return
            now = self._clock()
            if now >= next_send:
                try:
                    inflight.append((now, self.keeper.send(self.lease_id)))
                except EtcdUnavailable:
                    self._set(SessionState.SUSPENDED)
                next_send = now + (
                    interval if self._state is SessionState.CONNECTED else interval / 3
                )
            while inflight and inflight[0][1].done():
                sent, fut = inflight.popleft()
                try:
                    left = fut.result()
                except EtcdUnavailable:
                    self._set(SessionState.SUSPENDED)
                    continue
                if left <= 0:
                    log.warning("session %x lost: lease gone (TTL %d)", self.lease_id, left)
                    self._set(SessionState.LOST)
                    return
                self._deadline = max(self._deadline, sent + left)
                self._set(SessionState.CONNECTED)
            if inflight and now - inflight[0][0] > patience:
                log.warning(
                    "session %x: keepalive unanswered for %.1f s, abandoning the stream",
                    self.lease_id,
                    now - inflight[0][0],
                )
                inflight.clear()
                self.keeper.abandon_stream()
                self._set(SessionState.SUSPENDED)
                next_send = now
            if now >= self._deadline:
                log.warning(
                    "session %x lost: no keepalive answered before its deadline", self.lease_id
                )
                self._set(SessionState.LOST)
                return

    def close(self, *, revoke: bool = True) -> None:
        """Stop renewing and revoke the lease (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        if revoke and not self.lost.is_set():
            with contextlib.suppress(Exception):
                self.keeper.revoke(self.lease_id)
        self._set(SessionState.LOST)
        if self._own_keeper:
            self.keeper.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
