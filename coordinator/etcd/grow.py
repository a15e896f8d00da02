"""Growing a project in one fenced txn (docs/etcd-layer.md, "Growing a project").

A batch writes: the new task records (``Version == 0`` each: ids are new),
the existing records it blocks, rewritten with the new dependencies and
PENDING (``ModRevision == seen`` and ``Version(claim) == 0``: still
unstarted and unclaimed), and the project meta with its new task count
(``ModRevision(meta) == seen``: batches of one project are serialised). All
or nothing: a failed compare writes nothing (``CONFLICT``, decide again); a
failed leader fence is ``NOT_LEADER``. :func:`growth_item` is also what a
completion that spawns children adds to its own txn (``Claims.complete``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from workhive.coordinator.etcd import codec
from workhive.coordinator.etcd.claims import Claims, Completion
from workhive.coordinator.etcd.client import EtcdClient
from workhive.coordinator.etcd.keys import Keyspace
from workhive.coordinator.etcd.txn import (
    Fence,
    TxnItem,
    cmp_mod,
    cmp_version,
    merged,
    op_put,
    run_batch,
)
from workhive.coordinator.etcd.types import ItemResult, Outcome, ProjectMeta, TaskRecord
from workhive.coordinator.model import TaskKey, TaskSpec, TaskState

MAX_GROW_BYTES = 1024 * 1024
"""Bytes of keys and values one batch may write (etcd takes 1.5 MiB a request)."""


@dataclass(frozen=True, slots=True)
class Growth:
    """New tasks of ``meta``'s project, and the existing records they block
    (as seen, with ``new_deps[i]`` to add to ``blocked[i]``)."""

    meta: ProjectMeta
    tasks: tuple[TaskSpec, ...]
    blocked: tuple[TaskRecord, ...] = ()
    new_deps: tuple[tuple[str, ...], ...] = ()

    def records(self) -> list[TaskRecord]:
        """The new records: READY without dependencies, else PENDING."""
        pid = self.meta.id
        return [
            TaskRecord(
                TaskKey(pid, t.id), t, TaskState.PENDING if t.depends_on else TaskState.READY
            )
            for t in self.tasks
        ]

    def rewritten(self) -> list[TaskRecord]:
        """The blocked records as they will be stored."""
        return [
            replace(
                r,
                spec=replace(r.spec, depends_on=(*r.spec.depends_on, *deps)),
                state=TaskState.PENDING,
            )
            for r, deps in zip(self.blocked, self.new_deps, strict=True)
        ]


class GrowthTooLarge(ValueError):
    """The batch's records exceed ``MAX_GROW_BYTES``."""


def growth_item(ks: Keyspace, g: Growth) -> TxnItem:
    """Compares and writes of one batch (see module docstring)."""
    cmps: list[object] = [cmp_mod(ks.meta(g.meta.id), g.meta.mod_revision)]
    puts: list[tuple[bytes, bytes]] = []
    for rec in g.records():
        k = ks.task(rec.key)
        cmps.append(cmp_version(k, 0))
        puts.append((k, codec.encode_task(rec)))
    for seen, rec in zip(g.blocked, g.rewritten(), strict=True):
        k = ks.task(rec.key)
        cmps += [cmp_mod(k, seen.mod_revision), cmp_version(ks.claim(rec.key), 0)]
        puts.append((k, codec.encode_task(rec)))
    meta = replace(g.meta, task_count=g.meta.task_count + len(g.tasks))
    puts.append((ks.meta(g.meta.id), codec.encode_meta(meta)))
    size = sum(len(k) + len(v) for k, v in puts)
    if size > MAX_GROW_BYTES:
        raise GrowthTooLarge(f"batch is {size} bytes of records, limit {MAX_GROW_BYTES}")
    return TxnItem(cmps, [op_put(k, v) for k, v in puts], puts=puts)


def add_tasks(client: EtcdClient, ks: Keyspace, g: Growth, fence: Fence) -> ItemResult:
    """Commit one batch (``OK`` with its revision, ``CONFLICT`` or ``NOT_LEADER``)."""
    return run_batch(client, [growth_item(ks, g)], fence=fence)[0]


def grown(g: Growth, revision: int) -> tuple[ProjectMeta, Sequence[TaskRecord]]:
    """What the batch stored at ``revision``: the meta and every record written."""
    meta = replace(g.meta, task_count=g.meta.task_count + len(g.tasks), mod_revision=revision)
    recs = [replace(r, mod_revision=revision, create_revision=revision) for r in g.records()] + [
        replace(r, mod_revision=revision) for r in g.rewritten()
    ]
    return meta, recs


def complete_and_grow(
    claims: Claims, c: Completion, rec: TaskRecord, g: Growth, fence: Fence
) -> ItemResult:
    """A completion that spawns tasks: the completion's compares and writes
    (``Claims.complete``, rule 4) and the batch's, in one fenced txn. A
    refused txn whose completion had already committed (a retried report:
    the result is there with the same agent and attempt) is ``OK``: the
    batch was written with it, once."""
    done = claims.completion_item(c, rec, unread_result=True)
    grow = growth_item(claims.ks, g)
    res = run_batch(claims.client, [merged([done, grow])], fence=fence)[0]
    if res.outcome is not Outcome.CONFLICT:
        return res
    kv = claims.client.get(claims.ks.result(c.key))
    if kv is not None:
        prev = codec.decode_result(c.key, kv)
        if prev.agent == c.result.agent and prev.attempt == c.result.attempt:
            return ItemResult(Outcome.OK, kv.mod_revision)
    return res
