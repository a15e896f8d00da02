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
waits on, are independent items of the same batch.

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
        else:  # too big for one txn: the completions go alone, the claims wait
            items += parts
            owners += [([i], []) for i in members]
    for j in alone:
        items.append(claims.claim_item(reqs[j], fence))
        owners.append(([], [j]))
    for (ps, js), o in zip(owners, claims.run(items, fence), strict=True):
        for j in js:
            made[j] = Claims.claimed(reqs[j], o)
        if o.ok:
            for p in ps:
                done[p] = Claims.completed(comps[p], known[comps[p].key], o)
    rest = [i for i, d in enumerate(done) if d is None]
    for i, o in zip(rest, claims.complete([comps[i] for i in rest], fence=fence), strict=True):
        done[i] = o
    return [d or ItemResult(Outcome.CONFLICT) for d in done], made
