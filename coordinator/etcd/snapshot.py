"""Consistent snapshot of the whole prefix, then a watch from the next revision.

:func:`snapshot` reads every key under a prefix at ONE revision R (pages of
``page_size`` keys, every page pinned to R). :class:`Feed` is the leader's
rebuild loop (rule 5): snapshot at R -> ``on_reset(state)`` -> watch from R+1
-> ``on_events(batch)`` ...; on compaction it re-lists and calls ``on_reset``
again, then carries on. Across disconnects and etcd restarts the watch resumes
from the last delivered revision + 1, so the consumer sees every change once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from workhive.coordinator.etcd.client import EtcdClient, kv_from_pb, prefix_end
from workhive.coordinator.etcd.errors import Compacted, EtcdError
from workhive.coordinator.etcd.keys import Keyspace
from workhive.coordinator.etcd.store import ClusterState
from workhive.coordinator.etcd.types import KeyValue
from workhive.coordinator.etcd.watch import WatchBatch, Watcher

log = logging.getLogger(__name__)


def snapshot(
    client: EtcdClient, prefix: bytes, *, page_size: int = 2000
) -> tuple[int, list[KeyValue]]:
    """Every key under ``prefix`` at one revision: ``(revision, kvs)`` sorted by key."""
    end = prefix_end(prefix)
    r = client.range_raw(prefix, end, limit=page_size)
    rev = int(r.header.revision)
    kvs = [kv_from_pb(kv) for kv in r.kvs]
    while r.more:
        start = bytes(r.kvs[-1].key) + b"\0"
        r = client.range_raw(start, end, limit=page_size, revision=rev)
        kvs.extend(kv_from_pb(kv) for kv in r.kvs)
    return rev, kvs


class Feed:
    """Snapshot-then-watch over a keyspace with automatic re-list on compaction.

    Args:
        on_reset: called with a fresh :class:`ClusterState` (first time and after
            every re-list); the consumer replaces its whole view.
        on_events: called with each :class:`WatchBatch` after the snapshot.
    Both run on the feed thread, in order. ``resets`` counts re-lists.
    """

    def __init__(
        self,
        client: EtcdClient,
        keyspace: Keyspace,
        *,
        on_reset: Callable[[ClusterState], None],
        on_events: Callable[[WatchBatch], None],
        page_size: int = 2000,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.keyspace = keyspace
        self.on_reset = on_reset
        self.on_events = on_events
        self.page_size = page_size
        self._sleep = sleep
        self._stop = threading.Event()
        self._relist = threading.Event()
        self._watcher: Watcher | None = None
        self.resets = 0
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="etcd-feed", daemon=True)
        self._thread.start()

    @property
    def reconnects(self) -> int:
        return self._watcher.reconnects if self._watcher else 0

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rev, kvs = snapshot(self.client, self.keyspace.root, page_size=self.page_size)
            except EtcdError as e:
                log.warning("snapshot failed: %s; retrying", e)
                self._sleep(0.2)
                continue
            self.resets += 1
            self.on_reset(ClusterState.from_kvs(self.keyspace, rev, kvs))
            self.ready.set()
            w = self._watcher = Watcher(
                self.client,
                self.keyspace.root,
                prefix=True,
                start_revision=rev + 1,
                prev_kv=True,
                prev_on_put=False,  # the mirror reads a deleted claim's last value only
            )
            try:
                while not self._stop.is_set():
                    if self._relist.is_set():
                        self._relist.clear()
                        log.info("re-list requested")
                        break
                    try:
                        b = w.get(timeout=0.2)
                    except Compacted as c:
                        log.info("watch compacted (%d): re-listing", c.compact_revision)
                        break
                    if b is not None:
                        self.on_events(b)
            finally:
                w.cancel()

    def relist(self) -> None:
        """Snapshot again soon (within one watch poll, 0.2 s) and hand the
        fresh state to ``on_reset``; events after it follow as usual."""
        self._relist.set()

    def cancel(self) -> None:
        """Stop (idempotent)."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
