"""Claims: who owns which task, as batched compare-and-swap transactions.

``claims/<pid>/<tid>`` holds ``{agent, attempt, started}`` on the owning
agent's lease; the claim key's create revision is the **fence** a completion
must present. The task record's stored state never says ASSIGNED/RUNNING:
the claim's existence does (``types.effective_state``), so an agent lease
expiring makes its tasks ready again the instant etcd deletes the claims.

Which compare guards which write (``docs/etcd-layer.md`` has the table):

============  =======  ==================================================
operation     leader   per-item compares
              fence
============  =======  ==================================================
create        yes      Version(claim)==0, ModRevision(task)==seen (rule 2)
start         yes      ModRevision(claim)==seen (rule 3)
steal         yes      ModRevision(claim)==seen, claim not started (rule 3)
release       yes      ModRevision(claim)==seen
requeue       yes      Version(claim)==0, ModRevision(task)==seen
finish        yes      ModRevision(task)==seen, claim Mod==seen or absent
set_state     yes      ModRevision(task)==seen
complete      yes*     CreateRevision(claim)==fence, Lease(claim)==lease,
                       ModRevision(task)==seen (rule 4)
============  =======  ==================================================

*The claim fence alone proves ownership (every leader write that could end
or move the claim changes it); the leader also passes its own fence
(``fence=``), so a deposed leader that has not noticed yet commits no
completion its successor's scheduler would never hear of.

Every method returns one :class:`ItemResult` per input, in order: ``OK``,
``CONFLICT`` (state moved on: re-read, decide again) or ``NOT_LEADER``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from workhive.coordinator.etcd import codec
from workhive.coordinator.etcd.client import EtcdClient, kv_from_pb
from workhive.coordinator.etcd.keys import Keyspace
from workhive.coordinator.etcd.txn import (
    DEFAULT_MAX_TXN_OPS,
    Fence,
    TxnItem,
    cmp_create,
    cmp_lease,
    cmp_mod,
    cmp_version,
    op_delete,
    op_put,
    op_range,
    run_batch,
)
from workhive.coordinator.etcd.types import ItemResult, KeyValue, Outcome, TaskRecord
from workhive.coordinator.model import Claim, TaskKey, TaskResult, TaskState

CLAIMABLE = (TaskState.READY, TaskState.PENDING)
"""Record states a claim may be created on (anything else is a CONFLICT)."""


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """Claim ``record`` (seen READY at ``record.mod_revision``) for ``agent``."""

    record: TaskRecord
    agent: str
    lease_id: int
    started: bool = False  # the agent has a free slot now: skip the start round trip
    after: tuple[str, ...] = ()  # chained: started before these dependencies succeeded


@dataclass(frozen=True, slots=True)
class Steal:
    """Move unstarted ``claim`` to ``agent`` on ``lease_id``."""

    claim: Claim
    agent: str
    lease_id: int


@dataclass(frozen=True, slots=True)
class Completion:
    """An agent's report: the claim fence and lease it was given, and the outcome."""

    key: TaskKey
    fence: int
    lease_id: int
    result: TaskResult


@dataclass(frozen=True, slots=True)
class Finish:
    """Force ``record`` to a terminal ``state`` (failed/cancelled), dropping ``claim``."""

    record: TaskRecord
    state: TaskState
    reason: str = ""
    claim: Claim | None = None


class Claims:
    """Claim and task-state transitions. Thread-safe (stateless over the client)."""

    def __init__(
        self, client: EtcdClient, keyspace: Keyspace, *, max_ops: int = DEFAULT_MAX_TXN_OPS
    ) -> None:
        self.client = client
        self.ks = keyspace
        self.max_ops = max_ops
        self.txns_sent = 0

    def _count(self, n: int) -> None:
        self.txns_sent += 1

    def run(self, items: Sequence[TxnItem], fence: Fence | None) -> list[ItemResult]:
        """``run_batch`` of ``items``, counted in ``txns_sent``."""
        return run_batch(self.client, items, fence=fence, max_ops=self.max_ops, on_txn=self._count)

    # -- leader writes (fenced) -----------------------------------------------

    def create(self, reqs: Sequence[ClaimRequest], fence: Fence) -> list[ItemResult]:
        """Create claims (rule 2); OK results carry the new :class:`Claim`.

        A PENDING record is claimable when the leader saw all its parents
        succeed (the caller's judgement, fenced by the record's mod revision):
        the same txn records it READY, saving a round trip per dependency
        release. A chained claim (``after``) leaves the record PENDING: its
        dependencies have not succeeded. A terminal record is a CONFLICT
        without a round trip.
        """
        todo = [i for i, r in enumerate(reqs) if r.record.state in CLAIMABLE]
        res: list[ItemResult] = [ItemResult(Outcome.CONFLICT)] * len(reqs)
        items = [self.claim_item(reqs[i], fence) for i in todo]
        for i, o in zip(todo, self.run(items, fence), strict=True):
            res[i] = self.claimed(reqs[i], o)
        return res

    def claim_item(self, r: ClaimRequest, fence: Fence) -> TxnItem:
        """One claim (rule 2): the claim key on the agent's lease, and a PENDING
        record set READY; guarded by the claim's absence and the record's mod
        revision. ``r.record.state`` must be in ``CLAIMABLE``."""
        ck, tk = self.ks.claim(r.record.key), self.ks.task(r.record.key)
        v = codec.encode_claim(r.agent, r.record.attempt, r.started, fence.term, r.after)
        ops = [op_put(ck, v, r.lease_id)]
        puts = [(ck, v)]
        if r.record.state is TaskState.PENDING and not r.after:
            tv = codec.encode_task(replace(r.record, state=TaskState.READY))
            ops.append(op_put(tk, tv))
            puts.append((tk, tv))
        return TxnItem([cmp_version(ck, 0), cmp_mod(tk, r.record.mod_revision)], ops, puts=puts)

    @staticmethod
    def claimed(r: ClaimRequest, o: ItemResult) -> ItemResult:
        """``o`` with the new :class:`Claim` when it is OK."""
        if not o.ok:
            return o
        c = Claim(
            r.record.key,
            r.agent,
            r.record.attempt,
            r.started,
            o.revision,
            o.revision,
            r.lease_id,
            r.after,
        )
        return replace(o, claim=c)

    @staticmethod
    def completed(c: Completion, rec: TaskRecord, o: ItemResult) -> ItemResult:
        """``o`` with the task record ``completion_item(c, rec)`` wrote, when OK."""
        if not o.ok:
            return o
        return replace(o, record=replace(rec, state=c.result.state, mod_revision=o.revision))

    def start(self, claims: Sequence[Claim], fence: Fence) -> list[ItemResult]:
        """Confirm starts (rule 3): CAS on each claim's mod revision."""
        items = []
        for c in claims:
            ck = self.ks.claim(c.key)
            v = codec.encode_claim(c.agent, c.attempt, True, fence.term)
            items.append(
                TxnItem([cmp_mod(ck, c.mod_revision)], [op_put(ck, v, c.lease_id)], puts=[(ck, v)])
            )
        out = self.run(items, fence)
        return [
            replace(o, claim=replace(c, started=True, mod_revision=o.revision)) if o.ok else o
            for c, o in zip(claims, out, strict=True)
        ]

    def steal(self, moves: Sequence[Steal], fence: Fence) -> list[ItemResult]:
        """Move unstarted claims to another agent's lease (CAS on mod revision).

        A started claim is never moved (CONFLICT without a round trip). The
        claim keeps its create revision; the victim's completion is rejected
        anyway by the lease compare, and it can no longer start (mod moved).
        """
        items: list[TxnItem] = []
        for m in moves:
            ck = self.ks.claim(m.claim.key)
            v = codec.encode_claim(m.agent, m.claim.attempt, False, fence.term)
            items.append(
                TxnItem(
                    [cmp_mod(ck, m.claim.mod_revision)], [op_put(ck, v, m.lease_id)], puts=[(ck, v)]
                )
            )
        todo = [i for i, m in enumerate(moves) if not m.claim.started]
        res: list[ItemResult] = [ItemResult(Outcome.CONFLICT)] * len(moves)
        for i, o in zip(todo, self.run([items[i] for i in todo], fence), strict=True):
            m = moves[i]
            res[i] = (
                replace(
                    o,
                    claim=replace(
                        m.claim, agent=m.agent, lease_id=m.lease_id, mod_revision=o.revision
                    ),
                )
                if o.ok
                else o
            )
        return res

    def release(self, claims: Sequence[Claim], fence: Fence) -> list[ItemResult]:
        """Give claims back (task ready again, attempt unchanged)."""
        items = []
        for c in claims:
            ck = self.ks.claim(c.key)
            items.append(TxnItem([cmp_mod(ck, c.mod_revision)], [op_delete(ck)], deletes=[ck]))
        return self.run(items, fence)

    def requeue(
        self, records: Sequence[TaskRecord], fence: Fence, attempts: Sequence[int] | None = None
    ) -> list[ItemResult]:
        """After the claim vanished (lease expiry): READY again at ``attempts[i]``
        (default ``attempt + 1``). Whether a task is retried or failed for good
        is the scheduler's decision alone (a failure goes through ``finish``):
        the scheduler and etcd never disagree on a task being terminal, and a
        claim that never started does not spend an attempt."""
        items: list[TxnItem] = []
        given = [r.attempt + 1 for r in records] if attempts is None else list(attempts)
        for rec, attempt in zip(records, given, strict=True):
            ck, tk = self.ks.claim(rec.key), self.ks.task(rec.key)
            cmps = [cmp_version(ck, 0), cmp_mod(tk, rec.mod_revision)]
            new = replace(rec, state=TaskState.READY, attempt=attempt)
            tv = codec.encode_task(new)
            items.append(TxnItem(cmps, [op_put(tk, tv)], puts=[(tk, tv)]))
        return self.run(items, fence)

    def set_state(self, records: Sequence[TaskRecord], fence: Fence) -> list[ItemResult]:
        """Write records as given (e.g. PENDING -> READY), CAS on their mod revision.

        ``mod_revision`` of each record must be the one the leader saw.
        """
        items = []
        for rec in records:
            tk = self.ks.task(rec.key)
            tv = codec.encode_task(rec)
            items.append(
                TxnItem([cmp_mod(tk, rec.mod_revision)], [op_put(tk, tv)], puts=[(tk, tv)])
            )
        return self.run(items, fence)

    def finish(
        self, items_in: Sequence[Finish], fence: Fence, *, now: float | None = None
    ) -> list[ItemResult]:
        """Mark tasks failed/cancelled: record + result written, claim (if any) deleted."""
        items = []
        for f in items_in:
            tk, ck, rk = (
                self.ks.task(f.record.key),
                self.ks.claim(f.record.key),
                self.ks.result(f.record.key),
            )
            cmps = [cmp_mod(tk, f.record.mod_revision)]
            succ = []
            deletes = []
            if f.claim is not None:
                cmps.append(cmp_mod(ck, f.claim.mod_revision))
                succ.append(op_delete(ck))
                deletes.append(ck)
            else:
                cmps.append(cmp_version(ck, 0))
            res = TaskResult(
                f.record.key,
                f.state,
                agent=f.claim.agent if f.claim else "",
                attempt=f.record.attempt,
                reason=f.reason,
                finished_at=time.time() if now is None else now,
            )
            tv, rv = codec.encode_task(replace(f.record, state=f.state)), codec.encode_result(res)
            succ += [op_put(tk, tv), op_put(rk, rv)]
            items.append(TxnItem(cmps, succ, puts=[(tk, tv), (rk, rv)], deletes=deletes))
        return self.run(items, fence)

    # -- completions (claim-fenced; any replica) -------------------------------

    def completion_item(self, c: Completion, rec: TaskRecord, *, unread_result: bool) -> TxnItem:
        """One completion: claim deleted, result written, record set to the
        result's state; guarded by the claim's fence and lease and the record's
        mod revision, and (when no read showed the result absent) by the result
        not existing yet."""
        ck, tk, rk = self.ks.claim(c.key), self.ks.task(c.key), self.ks.result(c.key)
        tv = codec.encode_task(replace(rec, state=c.result.state))
        rv = codec.encode_result(c.result)
        cmps = [cmp_create(ck, c.fence), cmp_lease(ck, c.lease_id), cmp_mod(tk, rec.mod_revision)]
        if unread_result:
            cmps.append(cmp_version(rk, 0))
        return TxnItem(
            cmps,
            [op_delete(ck), op_put(rk, rv), op_put(tk, tv)],
            puts=[(rk, rv), (tk, tv)],
            deletes=[ck],
        )

    def _complete_known(
        self,
        comps: Sequence[Completion],
        known: Mapping[TaskKey, TaskRecord],
        fence: Fence | None,
        res: list[ItemResult | None],
    ) -> list[int]:
        """Fast path of :meth:`complete`; returns the indexes still undecided."""
        items: list[TxnItem] = []
        idx: list[tuple[int, TaskRecord]] = []
        rest: list[int] = []
        taken: set[TaskKey] = set()  # a key's second completion in one batch is decided later
        for i, c in enumerate(comps):
            rec = known.get(c.key)
            if rec is None or rec.mod_revision <= 0 or c.key in taken:
                rest.append(i)
                continue
            items.append(self.completion_item(c, rec, unread_result=True))
            idx.append((i, rec))
            taken.add(c.key)
        for (i, rec), o in zip(idx, self.run(items, fence), strict=True):
            if o.ok:
                res[i] = self.completed(comps[i], rec, o)
            else:
                rest.append(i)
        return sorted(rest)

    def _read(self, keys: Sequence[bytes]) -> dict[bytes, KeyValue | None]:
        out: dict[bytes, KeyValue | None] = {}
        for i in range(0, len(keys), self.max_ops):
            chunk = keys[i : i + self.max_ops]
            r = self.client.txn_raw([], [op_range(k) for k in chunk], retry=True)
            for k, resp in zip(chunk, r.responses, strict=True):
                kvs = resp.response_range.kvs
                out[k] = kv_from_pb(kvs[0]) if kvs else None
        return out

    def complete(
        self,
        comps: Sequence[Completion],
        *,
        fence: Fence | None = None,
        known: Mapping[TaskKey, TaskRecord] | None = None,
    ) -> list[ItemResult]:
        """Commit completions exactly once (rule 4).

        One txn per batch: claim deleted, result written, task record set to
        the result's state. ``OK`` also when the very same completion was
        already committed (an agent retrying after a lost ack); ``CONFLICT``
        means rejected: the agent must drop the task.

        ``known`` (the leader's mirror) supplies task records so the common
        case commits without reading first (compares: claim fence and lease,
        record mod revision, no result yet); anything that fails that fast
        path is decided by the read-then-commit path below.
        """
        res: list[ItemResult | None] = [None] * len(comps)
        todo = list(range(len(comps)))
        if known:
            todo = self._complete_known(comps, known, fence, res)
        for _ in range(3):
            if not todo:
                break
            keys = [self.ks.task(comps[i].key) for i in todo] + [
                self.ks.result(comps[i].key) for i in todo
            ]
            seen = self._read(keys)
            items: list[TxnItem] = []
            idx: list[tuple[int, TaskRecord]] = []
            for i in todo:
                c = comps[i]
                tkv, rkv = seen[self.ks.task(c.key)], seen[self.ks.result(c.key)]
                if rkv is not None:
                    prev = codec.decode_result(c.key, rkv)
                    same = prev.agent == c.result.agent and prev.attempt == c.result.attempt
                    res[i] = ItemResult(Outcome.OK if same else Outcome.CONFLICT, rkv.mod_revision)
                    continue
                if tkv is None:
                    res[i] = ItemResult(Outcome.CONFLICT)
                    continue
                rec = codec.decode_task(c.key, tkv)
                items.append(self.completion_item(c, rec, unread_result=False))
                idx.append((i, rec))
            out = self.run(items, fence)
            todo = []
            for (i, rec), o in zip(idx, out, strict=True):
                if o.outcome is Outcome.CONFLICT:
                    todo.append(i)  # re-read: a concurrent duplicate may have committed it
                else:
                    res[i] = self.completed(comps[i], rec, o)
            if todo:
                # Retry only those whose claim still matches; others are rejected.
                ck_seen = self._read([self.ks.claim(comps[i].key) for i in todo])
                still = []
                for i in todo:
                    kv = ck_seen[self.ks.claim(comps[i].key)]
                    if (
                        kv is not None
                        and kv.create_revision == comps[i].fence
                        and kv.lease == comps[i].lease_id
                    ):
                        still.append(i)
                    else:
                        res[i] = (
                            None  # decided on the next read (result present?) or rejected below
                        )
                rk_seen = self._read([self.ks.result(comps[i].key) for i in todo if i not in still])
                for i in todo:
                    if i in still:
                        continue
                    rkv = rk_seen.get(self.ks.result(comps[i].key))
                    if rkv is not None:
                        prev = codec.decode_result(comps[i].key, rkv)
                        same = (
                            prev.agent == comps[i].result.agent
                            and prev.attempt == comps[i].result.attempt
                        )
                        res[i] = ItemResult(
                            Outcome.OK if same else Outcome.CONFLICT, rkv.mod_revision
                        )
                    else:
                        res[i] = ItemResult(Outcome.CONFLICT)
                todo = still
        return [r if r is not None else ItemResult(Outcome.CONFLICT) for r in res]
