"""StandbyMirror: a follower's warm mirror, handed to a new leader without gaps."""

from __future__ import annotations

import queue
import time

import pytest

from workhive.coordinator.etcd import (
    ClusterState,
    EtcdClient,
    Keyspace,
    StandbyMirror,
    WatchBatch,
    codec,
)
from workhive.coordinator.model import AgentInfo

pytestmark = pytest.mark.integration


def agent_key(ks: Keyspace, i: int) -> bytes:
    return ks.agent(f"a{i:03d}")


def put_agent(client: EtcdClient, ks: Keyspace, i: int) -> int:
    return client.put(agent_key(ks, i), codec.encode_agent(AgentInfo(id=f"a{i:03d}")))


def wait_for(cond: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.02)
    assert cond(), "condition not met in time"  # type: ignore[operator]


def test_standby_follows_every_change_until_handed_over(client: EtcdClient, ks: Keyspace) -> None:
    for i in range(5):
        put_agent(client, ks, i)
    standby = StandbyMirror(client, ks)
    try:
        last = 0
        for i in range(5, 10):
            last = put_agent(client, ks, i)
        wait_for(lambda: standby.revision >= last)
        got: queue.SimpleQueue[ClusterState | WatchBatch] = queue.SimpleQueue()
        standby.hand_over(got.put)
        state = got.get(timeout=5)
        assert isinstance(state, ClusterState)
        assert sorted(state.agents) == [f"a{i:03d}" for i in range(10)]
        after = put_agent(client, ks, 10)
        batch = got.get(timeout=5)
        assert isinstance(batch, WatchBatch)
        assert [e.revision for e in batch.events] == [after]  # no gap, no repeat
        assert standby.revision == 0  # the receiver owns the state now
    finally:
        standby.cancel()


def test_hand_over_waits_for_the_new_terms_revision(client: EtcdClient, ks: Keyspace) -> None:
    standby = StandbyMirror(client, ks)
    try:
        wait_for(lambda: standby.revision > 0)
        got: queue.SimpleQueue[ClusterState | WatchBatch] = queue.SimpleQueue()
        target = client.revision() + 2
        standby.hand_over(got.put, min_revision=target)
        put_agent(client, ks, 0)
        with pytest.raises(queue.Empty):
            got.get(timeout=0.3)  # not yet at the term's revision
        put_agent(client, ks, 1)
        state = got.get(timeout=5)
        assert isinstance(state, ClusterState)
        assert state.revision >= target and sorted(state.agents) == ["a000", "a001"]
    finally:
        standby.cancel()


def test_a_first_snapshot_that_comes_after_the_hand_over_waits_for_the_terms_revision(
    client: EtcdClient, ks: Keyspace
) -> None:
    # a replica that leads right after it started: its warm mirror's first
    # snapshot was read before the new term's revision (mixed soak, fault 756)
    target = client.revision() + 2
    standby = StandbyMirror(client, ks)
    try:
        got: queue.SimpleQueue[ClusterState | WatchBatch] = queue.SimpleQueue()
        standby.hand_over(got.put, min_revision=target)
        with pytest.raises(queue.Empty):
            got.get(timeout=0.5)
        put_agent(client, ks, 0)
        put_agent(client, ks, 1)
        state = got.get(timeout=5)
        assert isinstance(state, ClusterState) and state.revision >= target
    finally:
        standby.cancel()
