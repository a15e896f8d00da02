"""A small project and the first claims of its tasks in one fenced txn
(``etcd.submit_and_claim``, docs/etcd-layer.md "Submit and claim in one txn")."""

from __future__ import annotations

import pytest

from workhive.coordinator.etcd import (
    ClaimRequest,
    Claims,
    Election,
    EtcdClient,
    Keyspace,
    LeaseKeeper,
    Outcome,
    Store,
    Submission,
    submission,
    submit_and_claim,
    submit_project,
)
from workhive.coordinator.model import ProjectSpec, TaskKey, TaskSpec, TaskState

pytestmark = pytest.mark.integration


def _project(pid: str, n: int = 2) -> Submission:
    return submission(ProjectSpec(id=pid, tasks=tuple(TaskSpec(id=f"t{i}") for i in range(n))))


def _claim(sub: Submission, task: str, lease: int) -> ClaimRequest:
    rec = next(r for r in sub.records if r.key.task == task)
    return ClaimRequest(rec, "agent-1", lease, started=True)


def test_a_project_and_its_first_claim_commit_at_one_revision(
    client: EtcdClient, ks: Keyspace, keeper: LeaseKeeper, leader: Election, claims: Claims
) -> None:
    lease = keeper.grant(10)
    sub = _project("p")
    sent = claims.txns_sent
    stored, made = submit_and_claim(claims, [sub], [_claim(sub, "t0", lease)], leader.fence)
    assert claims.txns_sent == sent + 1
    assert [o.outcome for o in stored + made] == [Outcome.OK, Outcome.OK]
    meta = Store(client, ks).project("p")
    assert meta is not None and meta.mod_revision == stored[0].revision
    _, claim, _, state = Store(client, ks).task(TaskKey("p", "t0"))
    assert claim is not None and claim.started and state is TaskState.RUNNING
    assert claim.mod_revision == meta.mod_revision  # claimed in the txn that made it visible
    assert made[0].claim == claim
    assert Store(client, ks).task(TaskKey("p", "t1"))[3] is TaskState.READY


def test_the_stored_records_are_what_etcd_holds(
    client: EtcdClient, ks: Keyspace, leader: Election, claims: Claims
) -> None:
    sub = _project("p", 3)
    stored, _ = submit_and_claim(claims, [sub], [], leader.fence)
    meta, records = sub.stored(stored[0].revision)
    assert Store(client, ks).project("p") == meta
    assert sorted(Store(client, ks).tasks("p") or [], key=lambda r: r.key.task) == records


def test_a_project_that_exists_is_refused_with_its_claims_and_the_others_commit(
    client: EtcdClient, ks: Keyspace, keeper: LeaseKeeper, leader: Election, claims: Claims
) -> None:
    lease = keeper.grant(10)
    submit_project(client, ks, ProjectSpec(id="old", tasks=(TaskSpec(id="t0"),)))
    old, new = _project("old"), _project("new")
    stored, made = submit_and_claim(
        claims, [old, new], [_claim(old, "t0", lease), _claim(new, "t0", lease)], leader.fence
    )
    assert [o.outcome for o in stored] == [Outcome.CONFLICT, Outcome.OK]
    assert [o.outcome for o in made] == [Outcome.CONFLICT, Outcome.OK]
    assert Store(client, ks).task(TaskKey("old", "t0"))[1] is None  # nothing of it written
    assert Store(client, ks).project("new") is not None


def test_keys_left_by_a_killed_submit_refuse_the_project(
    client: EtcdClient, ks: Keyspace, leader: Election, claims: Claims
) -> None:
    client.put(ks.task(TaskKey("p", "stale")), b"{}")  # a chunk of a submit that died
    stored, _ = submit_and_claim(claims, [_project("p"), _project("q")], [], leader.fence)
    assert [o.outcome for o in stored] == [Outcome.CONFLICT, Outcome.OK]
    assert Store(client, ks).project("p") is None


def test_a_deposed_leader_stores_nothing(
    client: EtcdClient, ks: Keyspace, leader: Election, claims: Claims
) -> None:
    fence = leader.fence
    leader.resign()
    stored, _ = submit_and_claim(claims, [_project("p")], [], fence)
    assert [o.outcome for o in stored] == [Outcome.NOT_LEADER]
    assert Store(client, ks).project("p") is None


def test_a_project_this_call_wrote_before_a_rerun_is_ours_with_its_claims(
    client: EtcdClient, ks: Keyspace, keeper: LeaseKeeper, leader: Election, claims: Claims
) -> None:
    lease = keeper.grant(10)
    sub = _project("p")
    submit_and_claim(claims, [sub], [_claim(sub, "t0", lease)], leader.fence)
    stored, made = submit_and_claim(claims, [sub], [_claim(sub, "t0", lease)], leader.fence)
    meta = Store(client, ks).project("p")
    assert meta is not None
    assert [(o.outcome, o.revision) for o in stored] == [(Outcome.OK, meta.mod_revision)]
    assert made[0].ok and made[0].claim is not None
    assert made[0].claim.mod_revision == meta.mod_revision
