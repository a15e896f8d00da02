"""Leader election: one leader, fast handover, fencing of deposed leaders."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from workhive.coordinator.etcd import (
    Election,
    EtcdClient,
    Keyspace,
    LeaseKeeper,
    LeaseLost,
    Outcome,
    Session,
    fenced_txn,
    observe,
)
from workhive.coordinator.etcd.txn import TxnItem, cmp_version, op_put, run_batch
from workhive.coordinator.model import LeaderInfo

pytestmark = pytest.mark.integration

TTL = 2


class Candidate:
    def __init__(self, client: EtcdClient, ks: Keyspace, keeper: LeaseKeeper, name: str) -> None:
        self.session = Session(client, ttl=TTL, keeper=keeper)
        self.election = Election(
            client, self.session, ks, candidate_id=name, address=f"{name}:7000"
        )
        self.led = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.election.campaign(timeout=15)
            self.led.set()
        except BaseException as e:
            self.error = e

    def close(self) -> None:
        self.session.close()
        self.thread.join(timeout=5)


@pytest.fixture
def candidates(client: EtcdClient, ks: Keyspace, keeper: LeaseKeeper) -> Iterator[list[Candidate]]:
    made: list[Candidate] = []
    try:
        for i in range(3):
            made.append(Candidate(client, ks, keeper, f"c{i}"))
            time.sleep(0.05)  # distinct create revisions in a known order
        yield made
    finally:
        for c in made:
            c.close()


def leaders(cs: list[Candidate]) -> list[Candidate]:
    return [c for c in cs if c.election.is_leader]


def test_exactly_one_leader_and_handover_on_lease_revoke(
    candidates: list[Candidate], client: EtcdClient, ks: Keyspace
) -> None:
    assert candidates[0].led.wait(5)
    time.sleep(0.3)
    assert leaders(candidates) == [candidates[0]]
    first = candidates[0].election
    assert first.term > 0
    assert first.leader() == LeaderInfo("c0", "c0:7000", first.term)

    # A lease revoked (as if it expired): the next candidate leads within TTL + 1 s.
    old_fence = first.fence
    t0 = time.monotonic()
    client.lease_revoke(candidates[0].session.lease_id)
    assert candidates[1].led.wait(TTL + 1), "no handover within TTL + 1 s"
    took = time.monotonic() - t0
    print(f"election handover after lease revoke: {took * 1000:.0f} ms")
    assert candidates[0].session.lost.wait(TTL + 1)
    assert leaders(candidates) == [candidates[1]]
    assert not candidates[2].led.is_set()

    # The deposed leader's fenced writes are rejected.
    key = ks.root + b"deposed-write"
    r = fenced_txn(client, old_fence, [], [op_put(key, b"x")])
    assert not r.succeeded
    res = run_batch(client, [TxnItem([cmp_version(key, 0)], [op_put(key, b"x")])], fence=old_fence)
    assert [x.outcome for x in res] == [Outcome.NOT_LEADER]
    assert client.get(key) is None
    # ... while the new leader's go through.
    res = run_batch(
        client,
        [TxnItem([cmp_version(key, 0)], [op_put(key, b"y")])],
        fence=candidates[1].election.fence,
    )
    assert res[0].ok


def test_resign_hands_over_fast_and_observer_follows(
    client: EtcdClient, ks: Keyspace, keeper: LeaseKeeper
) -> None:
    seen: list[LeaderInfo | None] = []
    obs = observe(client, ks, seen.append)
    a = Candidate(client, ks, keeper, "a")
    try:
        assert a.led.wait(5)
        b = Candidate(client, ks, keeper, "b")
        try:
            time.sleep(0.3)
            assert not b.led.is_set()
            t0 = time.monotonic()
            a.election.resign()
            assert b.led.wait(2)
            took = time.monotonic() - t0
            print(f"election handover after resign: {took * 1000:.0f} ms")
            assert took < 1.0
            assert not a.election.is_leader
            deadline = time.monotonic() + 3
            while (
                not seen or seen[-1] is None or seen[-1].id != "b"
            ) and time.monotonic() < deadline:
                time.sleep(0.02)
            ids = [x.id if x else None for x in seen]
            assert ids[-1] == "b" and "a" in ids
        finally:
            b.close()
    finally:
        a.close()
        obs.cancel()


def test_losing_session_ends_leadership_at_once(
    client: EtcdClient, ks: Keyspace, keeper: LeaseKeeper
) -> None:
    a = Candidate(client, ks, keeper, "solo")
    lost = threading.Event()
    try:
        assert a.led.wait(5)
        a.election.on_lost(lost.set)
        keeper.revoke(a.session.lease_id)
        assert lost.wait(TTL + 1)
        assert not a.election.is_leader
        with pytest.raises(Exception):  # noqa: B017  FenceLost
            _ = a.election.fence
        with pytest.raises(LeaseLost):
            a.election.campaign(timeout=1)
    finally:
        a.close()


def test_handover_after_lease_expiry(client: EtcdClient, ks: Keyspace, keeper: LeaseKeeper) -> None:
    a = Candidate(client, ks, keeper, "dies")
    try:
        assert a.led.wait(5)
        b = Candidate(client, ks, keeper, "next")
        try:
            time.sleep(0.2)
            t0 = time.monotonic()
            a.session.close(revoke=False)  # keepalives stop: the lease expires on its own
            assert b.led.wait(TTL + 1.5), "no handover within TTL + 1.5 s of the last keepalive"
            print(
                f"election handover after lease expiry (TTL {TTL}s): {time.monotonic() - t0:.2f} s"
            )
        finally:
            b.close()
    finally:
        a.close()
