"""Claims: exactly-once ownership, start/steal races, completion fencing, expiry."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from workhive.coordinator.etcd import (
    ClaimRequest,
    Claims,
    Completion,
    Election,
    EtcdClient,
    Fence,
    Finish,
    Keyspace,
    LeaseKeeper,
    Outcome,
    Steal,
    Store,
    Watcher,
)
from workhive.coordinator.etcd.watch import EventType
from workhive.coordinator.model import TaskResult, TaskState

from .helpers import submit_ready

pytestmark = pytest.mark.integration


def test_claim_start_complete_roundtrip(
    client: EtcdClient, ks: Keyspace, keeper: LeaseKeeper, leader: Election, claims: Claims
) -> None:
    recs = submit_ready(client, ks, "p", 3)
    lease = keeper.grant(10)
    store = Store(client, ks)
    reqs = [
        ClaimRequest(r, "agent-1", lease, started=(i == 0)) for i, r in enumerate(recs.values())
    ]
    out = claims.create(reqs, leader.fence)
    assert all(o.ok for o in out)
    c0, c1, c2 = (o.claim for o in out)
    assert c0 and c1 and c2 and c0.started and not c1.started
    assert store.task(c0.key)[3] is TaskState.RUNNING
    assert store.task(c1.key)[3] is TaskState.ASSIGNED

    # Claiming again conflicts (claim exists), other items in the batch unaffected.
    again = claims.create(reqs[:1], leader.fence)
    assert again[0].outcome is Outcome.CONFLICT

    started = claims.start([c1], leader.fence)
    assert started[0].ok and started[0].claim and started[0].claim.started
    # A stale start (old mod revision) is rejected.
    assert claims.start([c1], leader.fence)[0].outcome is Outcome.CONFLICT

    res = TaskResult(c0.key, TaskState.SUCCEEDED, agent="agent-1", attempt=1)
    # Wrong fence or wrong lease: rejected.
    bad = claims.complete(
        [Completion(c0.key, c0.fence + 1, lease, res), Completion(c0.key, c0.fence, lease + 1, res)]
    )
    assert [b.outcome for b in bad] == [Outcome.CONFLICT, Outcome.CONFLICT]
    ok = claims.complete([Completion(c0.key, c0.fence, lease, res)])
    assert ok[0].ok
    # Retried completion (lost ack): still OK, committed once.
    assert claims.complete([Completion(c0.key, c0.fence, lease, res)])[0].ok
    rec, claim, result, state = store.task(c0.key)
    assert claim is None and result is not None and state is TaskState.SUCCEEDED
    assert rec is not None and rec.state is TaskState.SUCCEEDED
    # A completed task can not be claimed again (its record moved).
    assert claims.create(reqs[:1], leader.fence)[0].outcome is Outcome.CONFLICT

    # Release: back to ready; finish: cancelled with a result.
    assert claims.release([c2], leader.fence)[0].ok
    assert store.task(c2.key)[3] is TaskState.READY
    rec2 = store.task(c2.key)[0]
    assert rec2 is not None
    fin = claims.finish([Finish(rec2, TaskState.CANCELLED, "user cancelled")], leader.fence)
    assert fin[0].ok and store.task(c2.key)[3] is TaskState.CANCELLED
    keeper.revoke(lease)


def test_eight_threads_claim_each_task_exactly_once(
    client: EtcdClient, ks: Keyspace, keeper: LeaseKeeper, leader: Election, claims: Claims
) -> None:
    recs = list(submit_ready(client, ks, "race", 200).values())
    leases = [keeper.grant(30) for _ in range(8)]
    wins: Counter[str] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        mine = recs[i * 7 % len(recs) :] + recs[: i * 7 % len(recs)]  # different orders
        barrier.wait()
        for j in range(0, len(mine), 25):
            out = claims.create(
                [ClaimRequest(r, f"a{i}", leases[i]) for r in mine[j : j + 25]], leader.fence
            )
            with lock:
                for o in out:
                    if o.ok:
                        assert o.claim is not None
                        wins[str(o.claim.key)] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(wins) == 200 and set(wins.values()) == {1}
    owners = Store(client, ks).claims()
    assert len(owners) == 200
    for lid in leases:
        keeper.revoke(lid)


def test_start_vs_steal_race_exactly_one_wins(
    client: EtcdClient, ks: Keyspace, keeper: LeaseKeeper, leader: Election, claims: Claims
) -> None:
    recs = list(submit_ready(client, ks, "steal", 30).values())
    victim, thief = keeper.grant(30), keeper.grant(30)
    created = claims.create([ClaimRequest(r, "victim", victim) for r in recs], leader.fence)
    cls = [o.claim for o in created if o.claim]
    assert len(cls) == 30
    results: dict[str, list[Outcome]] = {"start": [], "steal": []}
    barrier = threading.Barrier(2)

    def do_start() -> None:
        barrier.wait()
        for c in cls:
            results["start"].append(claims.start([c], leader.fence)[0].outcome)

    def do_steal() -> None:
        barrier.wait()
        for c in cls:
            results["steal"].append(
                claims.steal([Steal(c, "thief", thief)], leader.fence)[0].outcome
            )

    ts = [threading.Thread(target=do_start), threading.Thread(target=do_steal)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    for i, c in enumerate(cls):
        a, b = results["start"][i], results["steal"][i]
        assert {a, b} == {Outcome.OK, Outcome.CONFLICT}, (c.key, a, b)
        _, claim, _, state = Store(client, ks).task(c.key)
        assert claim is not None
        if a is Outcome.OK:
            assert claim.agent == "victim" and claim.started and state is TaskState.RUNNING
        else:
            assert claim.agent == "thief" and not claim.started and claim.lease_id == thief
            # The victim's completion is rejected: the claim moved off its lease.
            r = TaskResult(c.key, TaskState.SUCCEEDED, agent="victim", attempt=1)
            assert (
                claims.complete([Completion(c.key, c.fence, victim, r)])[0].outcome
                is Outcome.CONFLICT
            )
    n_start, n_steal = results["start"].count(Outcome.OK), results["steal"].count(Outcome.OK)
    print(f"start won {n_start}, steal won {n_steal}")
    # A started claim is never stolen.
    started = [c for c, o in zip(cls, results["start"], strict=True) if o is Outcome.OK]
    if started:
        cur = Store(client, ks).task(started[0].key)[1]
        assert cur is not None
        assert (
            claims.steal([Steal(cur, "thief", thief)], leader.fence)[0].outcome is Outcome.CONFLICT
        )
    keeper.revoke(victim)
    keeper.revoke(thief)


def test_agent_lease_expiry_releases_claims_and_requeue(
    client: EtcdClient, ks: Keyspace, keeper: LeaseKeeper, leader: Election, claims: Claims
) -> None:
    recs = submit_ready(client, ks, "exp", 20, max_attempts=2)
    lease = keeper.grant(2)
    out = claims.create(
        [ClaimRequest(r, "doomed", lease, started=True) for r in recs.values()], leader.fence
    )
    assert all(o.ok for o in out)
    store = Store(client, ks)
    rev = client.revision()
    w = Watcher(client, ks.claims_prefix, prefix=True, start_revision=rev + 1)
    t0 = time.monotonic()
    keeper.refresh(lease)  # last keepalive: the agent dies now
    deleted: set[bytes] = set()
    try:
        while len(deleted) < 20:
            assert time.monotonic() - t0 < 5, "claims did not vanish"
            b = w.get(timeout=0.5)
            if b:
                deleted |= {e.key for e in b.events if e.type is EventType.DELETE}
    finally:
        w.cancel()
    delay = time.monotonic() - t0
    print(f"agent lease TTL 2 s: claims gone and tasks ready after {delay:.2f} s")
    assert delay < 3.5
    assert all(store.task(k)[3] is TaskState.READY for k in recs)

    # Requeue: attempt 2 by default, else the attempt the scheduler decided
    # (never failed here: failing for good is the scheduler's call, via finish).
    fresh = [r for r in store.tasks("exp") or []]
    rq = claims.requeue(fresh, leader.fence)
    assert all(o.ok for o in rq)
    again = store.tasks("exp") or []
    assert {r.attempt for r in again} == {2} and {r.state for r in again} == {TaskState.READY}
    rq2 = claims.requeue(again, leader.fence, attempts=[2] * len(again))
    assert all(o.ok for o in rq2)
    assert {store.task(r.key)[3] for r in again} == {TaskState.READY}
    assert {r.attempt for r in store.tasks("exp") or []} == {2}


def test_deposed_leader_cannot_claim(
    client: EtcdClient, ks: Keyspace, keeper: LeaseKeeper, leader: Election, claims: Claims
) -> None:
    recs = submit_ready(client, ks, "fence", 5)
    lease = keeper.grant(10)
    stale = Fence(leader.fence.key, leader.fence.term)
    leader.resign()
    out = claims.create([ClaimRequest(r, "a", lease) for r in recs.values()], stale)
    assert {o.outcome for o in out} == {Outcome.NOT_LEADER}
    assert Store(client, ks).claims() == []
    keeper.revoke(lease)
