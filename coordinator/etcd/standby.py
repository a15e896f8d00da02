"""A follower's warm mirror: the whole keyspace kept current while not leading.

A replica that wins an election must decide from a consistent view of the
cluster (rule 5). Reading 100,000 task records and building the mirror takes
seconds; a follower that already holds it cuts the takeover to the watch lag.

Contract: a :class:`StandbyMirror` runs a :class:`Feed` (snapshot at R, then
every change from R+1, re-listing after compaction) and folds each batch
into its :class:`ClusterState` on the feed thread. ``hand_over(push,
min_revision)`` passes the state, once it has seen ``min_revision`` (the
new leader's first barrier, ``etcd.barrier``: everything an old leader
wrote is older), and then
every later reset or batch, to ``push`` in order, with no gap and no repeat.
After the hand-over the receiver owns the state object; the mirror no longer
touches it. Only the etcd layer's types cross this boundary.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from workhive.coordinator.etcd.client import EtcdClient
from workhive.coordinator.etcd.keys import Keyspace
from workhive.coordinator.etcd.snapshot import Feed
from workhive.coordinator.etcd.store import ClusterState
from workhive.coordinator.etcd.watch import WatchBatch

__all__ = ["StandbyMirror"]

Sink = Callable[[ClusterState | WatchBatch], None]
T = TypeVar("T")


class StandbyMirror:
    """Snapshot-then-watch kept warm until a leader takes it over. Thread-safe."""

    def __init__(self, client: EtcdClient, keyspace: Keyspace) -> None:
        self._lock = threading.Lock()
        self._state: ClusterState | None = None
        self._push: Sink | None = None
        self._min_revision = 0
        self._released = False  # the state went to ``_push``: changes follow it
        self.feed = Feed(client, keyspace, on_reset=self._reset, on_events=self._events)

    @property
    def revision(self) -> int:
        """Revision the mirror has reached (0: no snapshot yet, or handed over)."""
        with self._lock:
            return self._state.revision if self._state is not None else 0

    def hand_over(self, push: Sink, min_revision: int = 0) -> None:
        """From now on ``push`` receives the state (once at ``min_revision``)
        and every later change, on the feed thread."""
        with self._lock:
            self._push = push
            self._min_revision = min_revision
            self._release()

    def read(self, fn: Callable[[ClusterState], T]) -> T | None:
        """``fn(state)`` under the mirror's lock, while the mirror holds its state
        (``None``: no snapshot yet, or handed over). ``fn`` must only copy: the
        feed thread waits for it (the dashboard's snapshot, docs/dashboard.md)."""
        with self._lock:
            return fn(self._state) if self._state is not None else None

    def cancel(self) -> None:
        """Stop the feed (idempotent)."""
        self.feed.cancel()

    def _release(self) -> None:
        """Pass the held state on when it is due (lock held)."""
        st = self._state
        if self._push is not None and st is not None and st.revision >= self._min_revision:
            self._state, self._released = None, True
            self._push(st)

    def _reset(self, cs: ClusterState) -> None:
        with self._lock:
            if self._released:
                assert self._push is not None
                self._push(cs)  # a re-list after the hand-over goes to the leader
                return
            # the first snapshot may come after ``hand_over``: it waits for
            # ``min_revision`` like any state (it may have been read before it)
            self._state = cs
            self._release()

    def _events(self, batch: WatchBatch) -> None:
        with self._lock:
            if self._state is not None:
                self._state.apply(batch.events)
                self._release()
            elif self._released:
                assert self._push is not None
                self._push(batch)
