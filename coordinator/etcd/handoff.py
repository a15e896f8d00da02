"""Completions and the claims they release, in one fenced txn
(docs/etcd-layer.md, "Completion and next claim in one txn").

A chain step used to cost two sequential txns: the parent's completion
(rule 4), then, once the leader had seen it commit, the child's claim
(rule 2). :func:`complete_and_claim` writes both at once. A claim on a
PENDING record whose parents complete in the same call is *grouped* with
those completions: one :class:`TxnItem` holding every member's compares and
writes, so the child is claimed only in the very txn that commits all of its
parents (a group is all or nothing; a failed compare writes none of it).
Claims with no parent among the completions, and completions no claim
waits on, are independent items of the same batch. A completion whose
task depends on another completing in the same call (a chained task,
docs/scheduling.md "Chains run back to back", reporting right behind the
dependency it ran after) joins that one's group too, and on the slow path
commits only after it did (else it is a ``CONFLICT``): no success commits
before a dependency's.

Invariant (no early start): a claim never commits before the completions of
the parents it was grouped with. A completion that fails its fast-path
compares (or never had them: no record in ``known``) is decided by
``Claims.complete``'s read-then-commit path afterwards, and every claim
waiting on it is a ``CONFLICT``, decided again by the leader later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from workhive.coordinator.etcd.claims import CLAIMABLE, ClaimRequest, Claims, Completion
from workhive.coordinator.etcd.txn import Fence, TxnItem, merged
from workhive.coordinator.etcd.types import ItemResult, Outcome, TaskRecord
from workhive.coordinator.model import TaskKey, TaskState

Results = tuple[list[ItemResult], list[ItemResult]]


def _fits(item: TxnItem, max_ops: int) -> bool:
    """Within one txn beside the leader fence, and no key written twice."""
    keys = [k for k, _ in item.puts] + item.deletes
    return (
        len(item.compares) < max_ops
        and len(item.success) < max_ops
        and len({c.key for c in item.compares}) < max_ops
        and len(keys) == len(set(keys))
    )


def complete_and_claim(
    claims: Claims,
    comps: Sequence[Completion],
    known: Mapping[TaskKey, TaskRecord],
    reqs: Sequence[ClaimRequest],
    fence: Fence,
) -> Results:
    """Commit ``comps`` and create ``reqs`` (see module docstring).

    ``known`` is the leader's mirror of task records (the completions' fast
    path). Returns one result per completion (``OK`` also when that very
    completion had already committed) and one per claim (``OK`` results
    carry the new claim), in input order.
    """
    done: list[ItemResult | None] = [None] * len(comps)
    made: list[ItemResult] = [ItemResult(Outcome.CONFLICT)] * len(reqs)
    completing = {c.key for c in comps}
    fast: dict[TaskKey, int] = {}
    for i, c in enumerate(comps):
        rec = known.get(c.key)
        if rec is not None and rec.mod_revision > 0 and c.key not in fast:
            fast[c.key] = i
    # Union-find over the fast completions; each claim joins its parents' set.
    root = {i: i for i in fast.values()}

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    for key, i in fast.items():  # a chained task's completion joins its dependencies'
        for d in known[key].spec.depends_on:
            p = fast.get(TaskKey(key.project, d))
            if p is not None:
                root[find(i)] = find(p)
    waiting: dict[int, list[int]] = {}  # claim -> its completing parents
    alone: list[int] = []
    for j, r in enumerate(reqs):
        if r.record.state not in CLAIMABLE:
            continue
        deps = {TaskKey(r.record.key.project, d) for d in r.record.spec.depends_on}
        parents = deps & completing if r.record.state is TaskState.PENDING else set()
        if not parents:
            alone.append(j)
        elif parents <= fast.keys():
            waiting[j] = sorted(fast[k] for k in parents)
            for p in waiting[j][1:]:
                root[find(p)] = find(waiting[j][0])
        # else a parent is on the slow path: this claim is decided again later
    groups: dict[int, tuple[list[int], list[int]]] = {}
    for i in sorted(fast.values()):
        groups.setdefault(find(i), ([], []))[0].append(i)
    for j, ps in waiting.items():
        groups[find(ps[0])][1].append(j)
    items: list[TxnItem] = []
    owners: list[tuple[list[int], list[int]]] = []  # per item: completions, claims
    for members, claimed in groups.values():
        parts = [
            claims.completion_item(comps[i], known[comps[i].key], unread_result=True)
            for i in members
        ]
        whole = merged(parts + [claims.claim_item(reqs[j], fence) for j in claimed])
        if _fits(whole, claims.max_ops):
            items.append(whole)
            owners.append((members, claimed))
        else:  # too big for one txn: the slow path decides the completions, the claims wait
            continue
    for j in alone:
        items.append(claims.claim_item(reqs[j], fence))
        owners.append(([], [j]))
    for (ps, js), o in zip(owners, claims.run(items, fence), strict=True):
        for j in js:
            made[j] = Claims.claimed(reqs[j], o)
        if o.ok:
            for p in ps:
                done[p] = Claims.completed(comps[p], known[comps[p].key], o)
    _complete_in_order(claims, comps, known, done, fence)
    return [d or ItemResult(Outcome.CONFLICT) for d in done], made


def _complete_in_order(
    claims: Claims,
    comps: Sequence[Completion],
    known: Mapping[TaskKey, TaskRecord],
    done: list[ItemResult | None],
    fence: Fence,
) -> None:
    """The read-then-commit path for the completions still undecided, in
    waves: one goes once every dependency completing in this call has
    committed; one whose dependency was refused is a ``CONFLICT``."""
    completing = {c.key for c in comps}

    def deps(i: int) -> set[TaskKey]:
        rec = known.get(comps[i].key)
        spec = rec.spec.depends_on if rec is not None else ()
        return {TaskKey(comps[i].key.project, d) for d in spec} & completing

    rest = [i for i, d in enumerate(done) if d is None]
    while rest:
        settled = {comps[i].key: d.ok for i, d in enumerate(done) if d is not None}
        for i in rest:
            if any(settled.get(k) is False for k in deps(i)):
                done[i] = ItemResult(Outcome.CONFLICT)
        wave = [i for i in rest if done[i] is None and all(settled.get(k) for k in deps(i))]
        for i, o in zip(wave, claims.complete([comps[i] for i in wave], fence=fence), strict=True):
            done[i] = o
        rest = [i for i in rest if done[i] is None]
        if not wave:
            break
