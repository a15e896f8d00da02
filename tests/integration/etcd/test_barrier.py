"""The leader's barrier: a fenced write the watch delivers after every
change committed before it (docs/failover.md, "Resync after a barrier")."""

from __future__ import annotations

import time

import pytest

from workhive.coordinator.etcd import (
    Election,
    EtcdClient,
    EventType,
    Fence,
    Keyspace,
    Outcome,
    Watcher,
    write_barrier,
)

pytestmark = pytest.mark.integration


def test_a_barrier_is_delivered_by_the_watch_after_the_writes_before_it(
    client: EtcdClient, ks: Keyspace, leader: Election
) -> None:
    start = client.revision()
    client.put(ks.root + b"before", b"1")
    done = write_barrier(client, ks, leader.fence)
    assert done.outcome is Outcome.OK and done.revision > start
    w = Watcher(client, ks.root, prefix=True, start_revision=start + 1)
    seen: list[bytes] = []
    try:
        deadline = time.monotonic() + 5
        while ks.barrier not in seen:
            assert time.monotonic() < deadline, "the barrier was not delivered"
            batch = w.get(timeout=0.5)
            seen += [e.key for e in batch.events if e.type is EventType.PUT] if batch else []
    finally:
        w.cancel()
    assert seen.index(ks.root + b"before") < seen.index(ks.barrier)


def test_a_deposed_leader_writes_no_barrier(
    client: EtcdClient, ks: Keyspace, leader: Election
) -> None:
    stale = Fence(leader.fence.key, leader.fence.term)
    leader.resign()
    assert write_barrier(client, ks, stale).outcome is Outcome.NOT_LEADER
    assert client.get(ks.barrier) is None
