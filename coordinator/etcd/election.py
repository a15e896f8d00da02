"""Leader election as etcd's Go ``concurrency.Election`` does it.

Each candidate puts ``<prefix>election/<lease hex>`` (its id and advertised
address) on its session lease. The leader is the key with the lowest create
revision; that revision is the leader's **term**, its fencing token. A
candidate waits only for the deletion of its immediate predecessor (the key
with the highest create revision below its own, found with a range limited by
``max_create_revision``), so a leader change wakes one candidate, not all.

Invariants:
- at most one candidate believes it leads with a live session: a key on an
  expired lease is gone, and the next candidate only proceeds after seeing
  the deletion of every older key;
- leadership ends the instant the session is LOST (``is_leader`` turns False
  and ``on_lost`` listeners run) and on ``resign()``;
- every leader write is fenced by ``Compare(CreateRevision(own key) == term)``
  (:attr:`Election.fence`), so a deposed leader's write always fails.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from etcd3 import etcdrpc

from workhive.coordinator.etcd import codec
from workhive.coordinator.etcd.client import EtcdClient, prefix_end
from workhive.coordinator.etcd.errors import Compacted, FenceLost, LeaseLost
from workhive.coordinator.etcd.keys import Keyspace
from workhive.coordinator.etcd.session import Session, SessionState
from workhive.coordinator.etcd.txn import (
    Fence,
    cmp_create,
    cmp_version,
    op_delete,
    op_put,
    op_range,
)
from workhive.coordinator.etcd.watch import EventType, Watcher
from workhive.coordinator.model import LeaderInfo

_RR = etcdrpc.RangeRequest


def _leader_from_range(resp: Any) -> LeaderInfo | None:
    if not resp.kvs:
        return None
    kv = resp.kvs[0]
    cid, addr = codec.decode_candidate(bytes(kv.value))
    return LeaderInfo(id=cid, address=addr, term=int(kv.create_revision))


def current_leader(client: EtcdClient, keyspace: Keyspace) -> tuple[LeaderInfo | None, int]:
    """Who leads now (lowest create revision) and the read's revision."""
    p = keyspace.election_prefix
    r = client.range_raw(p, prefix_end(p), limit=1, sort_target=_RR.CREATE, sort_order=_RR.ASCEND)
    return _leader_from_range(r), int(r.header.revision)


class Election:
    """Campaign for leadership with a :class:`Session`.

    Args:
        client: etcd client.
        session: the candidate's session (its lease holds the election key).
        keyspace: where the election keys live.
        candidate_id: e.g. the pod name.
        address: advertised gRPC address, handed to followers' redirects.
    """

    def __init__(
        self,
        client: EtcdClient,
        session: Session,
        keyspace: Keyspace,
        *,
        candidate_id: str,
        address: str,
    ) -> None:
        self.client = client
        self.session = session
        self.keyspace = keyspace
        self.candidate_id = candidate_id
        self.address = address
        self.key = keyspace.election(session.lease_id)
        self._term = 0
        self._leader = False
        self._resigned = threading.Event()
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        session.add_listener(self._on_session)

    # -- state ----------------------------------------------------------------

    @property
    def term(self) -> int:
        """Create revision of our key once campaigning (0 before)."""
        return self._term

    @property
    def is_leader(self) -> bool:
        return self._leader and self.session.alive

    @property
    def fence(self) -> Fence:
        """The fencing token for leader txns; raises FenceLost when not leading."""
        if not self.is_leader:
            raise FenceLost(f"{self.candidate_id} is not the leader")
        return Fence(self.key, self._term)

    def info(self) -> LeaderInfo:
        return LeaderInfo(id=self.candidate_id, address=self.address, term=self._term)

    def on_lost(self, cb: Callable[[], None]) -> None:
        """Call ``cb`` (once per leadership) when leadership ends for any reason."""
        self._listeners.append(cb)

    def _on_session(self, state: SessionState) -> None:
        if state is SessionState.LOST:
            self._step_down()

    def _step_down(self) -> None:
        with self._lock:
            was, self._leader = self._leader, False
        if was:
            for cb in list(self._listeners):
                cb()

    # -- campaign -------------------------------------------------------------

    def campaign(self, timeout: float | None = None) -> LeaderInfo:
        """Block until this candidate leads; returns its :class:`LeaderInfo`.

        Raises LeaseLost if the session dies, TimeoutError after ``timeout``.
        Idempotent: re-campaigning with the same session reuses the key.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self.session.check()
        self._resigned.clear()
        value = codec.encode_candidate(self.candidate_id, self.address)
        # Create-if-absent else read: idempotent, so safe to retry.
        r = self.client.txn_raw(
            [cmp_version(self.key, 0)],
            [op_put(self.key, value, self.session.lease_id)],
            [op_range(self.key)],
            retry=True,
        )
        if r.succeeded:
            self._term = int(r.header.revision)
        else:
            kvs = r.responses[0].response_range.kvs
            if not kvs:  # deleted in between (resign race): start over
                return self.campaign(timeout)
            self._term = int(kvs[0].create_revision)
            if bytes(kvs[0].value) != value:
                self.client.txn_raw(
                    [cmp_create(self.key, self._term)],
                    [op_put(self.key, value, self.session.lease_id)],
                    retry=True,
                )
        try:
            self._wait_predecessors(deadline)
        except BaseException:
            if not self.session.lost.is_set():
                self.resign()
            raise
        with self._lock:
            self._leader = True
        if not self.session.alive:
            self._step_down()
            raise LeaseLost("session lost while becoming leader")
        return self.info()

    def _wait_predecessors(self, deadline: float | None) -> None:
        p = self.keyspace.election_prefix
        while True:
            self.session.check()
            if self._resigned.is_set():
                raise LeaseLost("resigned while campaigning")
            r = self.client.range_raw(
                p,
                prefix_end(p),
                limit=1,
                max_create_revision=self._term - 1,
                sort_target=_RR.CREATE,
                sort_order=_RR.DESCEND,
                keys_only=True,
            )
            if not r.kvs:
                # Our own key must still exist with our term (not deleted under us).
                own = self.client.get(self.key)
                if own is None or own.create_revision != self._term:
                    raise LeaseLost("election key vanished while campaigning")
                return
            pred = bytes(r.kvs[0].key)
            w = Watcher(
                self.client, pred, start_revision=int(r.header.revision) + 1, progress_notify=False
            )
            try:
                while True:
                    if deadline is not None and time.monotonic() > deadline:
                        raise TimeoutError("campaign timed out")
                    self.session.check()
                    if self._resigned.is_set():
                        raise LeaseLost("resigned while campaigning")
                    try:
                        b = w.get(timeout=0.1)
                    except Compacted:
                        break
                    if b and any(e.type is EventType.DELETE for e in b.events):
                        break
            finally:
                w.cancel()

    def resign(self) -> None:
        """Stop leading (or campaigning): delete our key if it still has our term."""
        self._resigned.set()
        if self._term:
            try:
                self.client.txn_raw(
                    [cmp_create(self.key, self._term)], [op_delete(self.key)], retry=True
                )
            except Exception:
                if self.session.alive:
                    raise
        self._step_down()

    def leader(self) -> LeaderInfo | None:
        """Who leads right now according to etcd (any candidate may ask)."""
        return current_leader(self.client, self.keyspace)[0]


class Observer:
    """Calls ``callback(LeaderInfo | None)`` each time the leader changes.

    Runs on its own thread: a range for the lowest create revision, then a
    prefix watch on the election keys from the next revision; each change
    re-reads the leader (cheap: limit 1). ``cancel()`` is idempotent.
    """

    def __init__(
        self, client: EtcdClient, keyspace: Keyspace, callback: Callable[[LeaderInfo | None], None]
    ) -> None:
        self.client = client
        self.keyspace = keyspace
        self.callback = callback
        self.current: LeaderInfo | None = None
        self._started = False
        self._stop = threading.Event()
        self._watcher: Watcher | None = None
        self._thread = threading.Thread(
            target=self._run, name="etcd-election-observer", daemon=True
        )
        self._thread.start()

    def _emit(self, info: LeaderInfo | None) -> None:
        if not self._started or info != self.current:
            self._started = True
            self.current = info
            self.callback(info)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                info, rev = current_leader(self.client, self.keyspace)
            except Exception:
                self._stop.wait(0.2)
                continue
            self._emit(info)
            w = self._watcher = Watcher(
                self.client, self.keyspace.election_prefix, prefix=True, start_revision=rev + 1
            )
            try:
                while not self._stop.is_set():
                    try:
                        b = w.get(timeout=0.2)
                    except Compacted:
                        break
                    if b is not None:
                        try:
                            info, _ = current_leader(self.client, self.keyspace)
                        except Exception:
                            break
                        self._emit(info)
            finally:
                w.cancel()

    def cancel(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)


def observe(
    client: EtcdClient, keyspace: Keyspace, callback: Callable[[LeaderInfo | None], None]
) -> Observer:
    """Start observing who leads; see :class:`Observer`."""
    return Observer(client, keyspace, callback)
