"""A completion and the claims it releases, in one fenced txn (etcd.handoff)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from workhive.coordinator.etcd import (
    ClaimRequest,
    Claims,
    Completion,
    Election,
    EtcdClient,
    Keyspace,
    LeaseKeeper,
    Outcome,
    Store,
    TaskRecord,
    complete_and_claim,
    submit_project,
)
from workhive.coordinator.model import Claim, ProjectSpec, TaskKey, TaskResult, TaskSpec, TaskState

pytestmark = pytest.mark.integration

Records = Callable[[], dict[TaskKey, TaskRecord]]


def K(task: str) -> TaskKey:
    return TaskKey("p", task)


@pytest.fixture
def records(client: EtcdClient, ks: Keyspace) -> Records:
    """Submit ``a -> c <- b`` and ``a -> d``; returns a reader of the records."""
    spec = ProjectSpec(
        id="p",
        tasks=(
            TaskSpec(id="a"),
            TaskSpec(id="b"),
            TaskSpec(id="c", depends_on=("a", "b")),
            TaskSpec(id="d", depends_on=("a",)),
        ),
    )
    submit_project(client, ks, spec)

    def read() -> dict[TaskKey, TaskRecord]:
        recs = Store(client, ks).tasks("p")
        assert recs is not None
        return {r.key: r for r in recs}

    return read


def _running(
    claims: Claims, leader: Election, recs: dict[TaskKey, TaskRecord], lease: int, *tasks: str
) -> dict[str, Claim]:
    out = claims.create(
        [ClaimRequest(recs[K(t)], "agent-1", lease, started=True) for t in tasks], leader.fence
    )
    assert all(o.ok and o.claim for o in out)
    return {t: o.claim for t, o in zip(tasks, out, strict=True) if o.claim is not None}


def _done(c: Claim, lease: int) -> Completion:
    return Completion(
        c.key, c.fence, lease, TaskResult(c.key, TaskState.SUCCEEDED, agent=c.agent, attempt=1)
    )


def test_a_completion_and_the_claim_it_releases_commit_at_one_revision(
    client: EtcdClient,
    ks: Keyspace,
    keeper: LeaseKeeper,
    leader: Election,
    claims: Claims,
    records: Records,
) -> None:
    lease = keeper.grant(10)
    held = _running(claims, leader, records(), lease, "a")
    recs = records()
    sent = claims.txns_sent
    done, made = complete_and_claim(
        claims,
        [_done(held["a"], lease)],
        recs,
        [ClaimRequest(recs[K("d")], "agent-2", lease)],
        leader.fence,
    )
    assert claims.txns_sent == sent + 1
    assert [o.outcome for o in done] == [Outcome.OK]
    assert [o.outcome for o in made] == [Outcome.OK]
    assert done[0].revision == made[0].revision
    _, claim, _, state = Store(client, ks).task(K("d"))
    assert claim is not None and claim.agent == "agent-2" and state is TaskState.ASSIGNED
    assert Store(client, ks).task(K("a"))[3] is TaskState.SUCCEEDED


def test_a_child_is_not_claimed_when_its_parents_completion_is_refused(
    client: EtcdClient,
    ks: Keyspace,
    keeper: LeaseKeeper,
    leader: Election,
    claims: Claims,
    records: Records,
) -> None:
    lease = keeper.grant(10)
    held = _running(claims, leader, records(), lease, "a")
    recs = records()
    client.delete(ks.claim(K("a")))  # the claim expired meanwhile
    done, made = complete_and_claim(
        claims,
        [_done(held["a"], lease)],
        recs,
        [ClaimRequest(recs[K("d")], "agent-2", lease)],
        leader.fence,
    )
    assert [o.outcome for o in done] == [Outcome.CONFLICT]
    assert [o.outcome for o in made] == [Outcome.CONFLICT]
    _, claim, _, state = Store(client, ks).task(K("d"))
    assert claim is None and state is TaskState.PENDING


def test_a_join_is_claimed_only_with_every_parent_completing_beside_it(
    client: EtcdClient,
    ks: Keyspace,
    keeper: LeaseKeeper,
    leader: Election,
    claims: Claims,
    records: Records,
) -> None:
    lease = keeper.grant(10)
    held = _running(claims, leader, records(), lease, "a", "b")
    recs = records()
    client.delete(ks.claim(K("b")))
    done, made = complete_and_claim(
        claims,
        [_done(held["a"], lease), _done(held["b"], lease)],
        recs,
        [ClaimRequest(recs[K("c")], "agent-2", lease)],
        leader.fence,
    )
    # a commits (alone, on the fallback path); b is refused, so c waits.
    assert [o.outcome for o in done] == [Outcome.OK, Outcome.CONFLICT]
    assert [o.outcome for o in made] == [Outcome.CONFLICT]
    assert Store(client, ks).task(K("c"))[1] is None


def test_a_child_whose_record_moved_is_refused_but_its_parent_still_completes(
    client: EtcdClient,
    ks: Keyspace,
    keeper: LeaseKeeper,
    leader: Election,
    claims: Claims,
    records: Records,
) -> None:
    lease = keeper.grant(10)
    held = _running(claims, leader, records(), lease, "a")
    recs = records()
    stale = {
        **recs,
        K("d"): TaskRecord(
            recs[K("d")].key, recs[K("d")].spec, TaskState.PENDING, 1, recs[K("d")].mod_revision - 1
        ),
    }
    done, made = complete_and_claim(
        claims,
        [_done(held["a"], lease)],
        recs,
        [ClaimRequest(stale[K("d")], "agent-2", lease)],
        leader.fence,
    )
    assert [o.outcome for o in done] == [Outcome.OK]
    assert [o.outcome for o in made] == [Outcome.CONFLICT]
    assert Store(client, ks).task(K("a"))[3] is TaskState.SUCCEEDED


def test_a_group_too_big_for_one_txn_completes_and_leaves_its_claim_for_later(
    client: EtcdClient,
    ks: Keyspace,
    keeper: LeaseKeeper,
    leader: Election,
    records: Records,
) -> None:
    small = Claims(client, ks, max_ops=8)  # a + b + c: 10 compares
    lease = keeper.grant(10)
    held = _running(small, leader, records(), lease, "a", "b")
    recs = records()
    done, made = complete_and_claim(
        small,
        [_done(held["a"], lease), _done(held["b"], lease)],
        recs,
        [ClaimRequest(recs[K("c")], "agent-2", lease)],
        leader.fence,
    )
    assert [o.outcome for o in done] == [Outcome.OK, Outcome.OK]
    assert [o.outcome for o in made] == [Outcome.CONFLICT]
    assert Store(client, ks).task(K("c"))[3] is TaskState.PENDING


def _chain(claims: Claims, leader: Election, records: Records, lease: int) -> tuple[Claim, Claim]:
    """``a`` running on agent-1, and ``d`` chained after it there (claimed
    started before ``a`` succeeded): their claims."""
    recs = records()
    held = _running(claims, leader, recs, lease, "a")
    req = ClaimRequest(recs[K("d")], "agent-1", lease, True, after=("a",))
    chained = claims.create([req], leader.fence)[0].claim
    assert chained is not None
    return held["a"], chained


def test_a_chained_completion_is_refused_with_its_dependencys(
    client: EtcdClient,
    ks: Keyspace,
    keeper: LeaseKeeper,
    leader: Election,
    claims: Claims,
    records: Records,
) -> None:
    lease = keeper.grant(10)
    a, d = _chain(claims, leader, records, lease)
    client.delete(ks.claim(K("a")))  # a's claim went: its completion is refused
    done, _ = complete_and_claim(
        claims, [_done(a, lease), _done(d, lease)], records(), [], leader.fence
    )
    assert [o.outcome for o in done] == [Outcome.CONFLICT, Outcome.CONFLICT]
    assert Store(client, ks).task(K("d"))[3] is not TaskState.SUCCEEDED


def test_a_chained_completion_commits_with_its_dependencys(
    client: EtcdClient,
    ks: Keyspace,
    keeper: LeaseKeeper,
    leader: Election,
    claims: Claims,
    records: Records,
) -> None:
    lease = keeper.grant(10)
    a, d = _chain(claims, leader, records, lease)
    assert Store(client, ks).task(K("d"))[0].state is TaskState.PENDING  # record left pending
    done, _ = complete_and_claim(
        claims, [_done(a, lease), _done(d, lease)], records(), [], leader.fence
    )
    assert [o.outcome for o in done] == [Outcome.OK, Outcome.OK]
    assert done[0].revision == done[1].revision
