"""Snapshot + watch: compaction, etcd restart and member loss lose no event."""

from __future__ import annotations

import threading
import time

import pytest

from tests.harness.etcd_fixtures import EtcdTarget
from tests.harness.etcd_process import EtcdCluster
from workhive.coordinator.etcd import (
    ClusterState,
    Compacted,
    EtcdClient,
    Feed,
    Keyspace,
    WatchBatch,
    Watcher,
    snapshot,
)
from workhive.coordinator.etcd.watch import EventType, WatchEvent

pytestmark = pytest.mark.integration


def test_snapshot_pages_at_one_revision(client: EtcdClient, ks: Keyspace) -> None:
    for i in range(25):
        client.put(ks.root + f"k{i:03d}".encode(), str(i).encode())
    rev, kvs = snapshot(client, ks.root, page_size=7)
    assert len(kvs) == 25 and [kv.key for kv in kvs] == sorted(kv.key for kv in kvs)
    client.put(ks.root + b"k999", b"late")
    rev2, kvs2 = snapshot(client, ks.root, page_size=7)
    assert rev2 > rev and len(kvs2) == 26


def _events_of(client: EtcdClient, key: bytes, start: int, prev_on_put: bool) -> list[WatchEvent]:
    w = Watcher(client, key, start_revision=start, prev_kv=True, prev_on_put=prev_on_put)
    try:
        got: list[WatchEvent] = []
        while len(got) < 3:
            batch = w.get(timeout=5)
            assert batch is not None, "watch delivered nothing"
            got += batch.events
        return got
    finally:
        w.cancel()


def test_a_watch_may_keep_previous_values_for_deletes_only(
    client: EtcdClient, ks: Keyspace
) -> None:
    key = ks.root + b"prev"
    start = client.put(key, b"one")
    client.put(key, b"two")
    client.delete(key)
    put1, put2, gone = _events_of(client, key, start, prev_on_put=False)
    assert (put1.prev, put2.prev) == (None, None)
    assert gone.type is EventType.DELETE and gone.prev is not None and gone.prev.value == b"two"
    _, put2, gone = _events_of(client, key, start, prev_on_put=True)  # the audit's view
    assert put2.prev is not None and put2.prev.value == b"one"
    assert gone.prev is not None and gone.prev.value == b"two"


def test_watch_from_compacted_revision_raises(client: EtcdClient, etcd_private: EtcdTarget) -> None:
    c = EtcdClient(etcd_private.endpoints)
    try:
        first = c.put(b"/x/a", b"1")
        c.put(b"/x/a", b"2")
        last = c.put(b"/x/a", b"3")
        c.compact(last)
        w = Watcher(c, b"/x/", prefix=True, start_revision=first)
        with pytest.raises(Compacted):
            w.get(timeout=5)
        w.cancel()
    finally:
        c.close()


class Mirror:
    """A consumer: keeps key -> value from a Feed and checks event order."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.revision = 0
        self.resets = 0
        self.events = 0
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()

    def on_reset(self, st: ClusterState) -> None:
        self.gate.wait(10)
        with self.lock:
            self.resets += 1
            self.revision = st.revision

    def on_events(self, b: WatchBatch) -> None:
        with self.lock:
            for e in b.events:
                assert e.revision > self.revision or (
                    e.revision == self.revision and self.events
                ), f"event at {e.revision} after {self.revision}: repeated or out of order"
                self.revision = e.revision
                self.events += 1
                if e.type is EventType.PUT:
                    self.data[e.key] = e.kv.value
                else:
                    self.data.pop(e.key, None)


def run_writer(
    client: EtcdClient, ks: Keyspace, n: int, during: threading.Event | None = None
) -> None:
    for i in range(n):
        client.put(ks.root + f"w/{i:04d}".encode(), str(i).encode())
        if during is not None and i == n // 2:
            during.set()
        time.sleep(0.002)


def collect(c: EtcdClient, ks: Keyspace, start: int) -> tuple[Watcher, list[tuple[int, bytes]]]:
    got: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    def cb(b: WatchBatch) -> None:
        with lock:
            got.extend((e.revision, e.key) for e in b.events)

    return Watcher(c, ks.root + b"w/", prefix=True, start_revision=start, callback=cb), got


def check_exactly_once(got: list[tuple[int, bytes]], n: int, ks: Keyspace) -> None:
    revs = [r for r, _ in got]
    assert revs == sorted(set(revs)), "repeated or out-of-order events"
    keys = [k for _, k in got]
    assert keys == [ks.root + f"w/{i:04d}".encode() for i in range(n)], "missing events"


def test_feed_relists_on_compaction(etcd_private: EtcdTarget) -> None:
    c = EtcdClient(etcd_private.endpoints)
    ks = Keyspace(etcd_private.prefix)
    m = Mirror()
    m.gate.clear()  # hold the first on_reset: the watch from R+1 starts late
    try:
        for i in range(10):
            c.put(ks.root + f"pre/{i}".encode(), b"x")
        feed = Feed(c, ks, on_reset=m.on_reset, on_events=m.on_events)
        time.sleep(0.3)  # snapshot taken at R, consumer busy
        for i in range(20):
            c.put(ks.root + f"mid/{i}".encode(), str(i).encode())
        c.compact(c.revision())
        m.gate.set()
        deadline = time.monotonic() + 10
        while m.resets < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert m.resets == 2, "feed did not re-list after compaction"
        assert feed.resets == 2
        # ... and carries on watching after the re-list.
        c.put(ks.root + b"after", b"y")
        deadline = time.monotonic() + 5
        while ks.root + b"after" not in m.data and time.monotonic() < deadline:
            time.sleep(0.05)
        assert m.data.get(ks.root + b"after") == b"y"
        feed.cancel()
    finally:
        c.close()


def test_watch_survives_etcd_restart(etcd_private: EtcdTarget) -> None:
    assert etcd_private.cluster is not None
    wc = EtcdClient(etcd_private.endpoints)
    pc = EtcdClient(etcd_private.endpoints)
    ks = Keyspace(etcd_private.prefix)
    n = 200
    try:
        w, got = collect(wc, ks, pc.revision() + 1)
        half = threading.Event()
        t = threading.Thread(target=run_writer, args=(pc, ks, n, half))
        t.start()
        assert half.wait(20)
        etcd_private.cluster.restart(0, kill=True)
        t.join(60)
        assert not t.is_alive()
        deadline = time.monotonic() + 10
        while len(got) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        w.cancel()
        print(f"etcd restart: watcher reconnected {w.reconnects} time(s), {len(got)} events")
        assert w.reconnects >= 1
        check_exactly_once(got, n, ks)
    finally:
        wc.close()
        pc.close()


def test_cluster_member_loss_no_event_lost(etcd_cluster: EtcdTarget) -> None:
    cluster = etcd_cluster.cluster
    assert isinstance(cluster, EtcdCluster)
    eps = list(etcd_cluster.endpoints)
    wc = EtcdClient(eps)  # watches through member 0, which dies
    pc = EtcdClient(eps[1:] + eps[:1])  # writes through member 1
    ks = Keyspace(etcd_cluster.prefix)
    n = 200
    m = Mirror()
    try:
        feed = Feed(wc, ks, on_reset=m.on_reset, on_events=m.on_events)
        assert feed.ready.wait(10)
        w, got = collect(wc, ks, pc.revision() + 1)
        half = threading.Event()
        t = threading.Thread(target=run_writer, args=(pc, ks, n, half))
        t.start()
        assert half.wait(20)
        cluster.members[0].kill()
        t.join(60)
        assert not t.is_alive()
        deadline = time.monotonic() + 15
        while (len(got) < n or len(m.data) < n) and time.monotonic() < deadline:
            time.sleep(0.05)
        w.cancel()
        feed.cancel()
        print(
            f"member loss: watcher reconnected {w.reconnects}x via {wc.endpoint}, {len(got)} events"
        )
        check_exactly_once(got, n, ks)
        assert m.resets == 1  # recovered by resuming, not by re-listing
        _, kvs = snapshot(pc, ks.root)
        assert m.data == {kv.key: kv.value for kv in kvs}
    finally:
        wc.close()
        pc.close()
