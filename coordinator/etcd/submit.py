"""Atomic-looking submit of a project of any size.

etcd caps a txn at ``max-txn-ops`` operations and a request at
``max-request-bytes`` (1.5 MiB by default), so a big project spans several
txns, cut by both counts: at most ``max_ops - 1`` puts and ``max_bytes`` of keys
and values each (a single larger task goes alone). Protocol:

1. take the submit marker ``projects/<pid>/submit`` (create-if-absent, on a
   short lease kept alive while submitting): one submitter per project; a
   killed submitter's marker vanishes with its lease;
2. delete leftovers of an earlier killed submit (task keys without meta),
   guarded by ``Version(meta) == 0`` and our marker;
3. write task records in chunks, each txn guarded the same way, up to
   ``SUBMIT_WRITERS`` chunks in flight at once (a killed submit may leave
   that many chunks behind);
4. write the meta key LAST, deleting the marker in the same txn: that is the
   instant the project becomes visible.

A project that fits in one txn (at most ``max_ops - 1`` records and
``max_bytes``; most do) is first tried in ONE txn instead: the records and
the meta together, guarded by the fence, ``Version(meta) == 0``,
``Version(marker) == 0`` (no chunked submit of it in progress) and
``Version == 0`` over the whole task range (no leftovers). etcd makes it
atomic by itself; if any compare fails, the protocol above runs and says
why (exists, conflict) or removes the leftovers. One round trip instead of
seven (lease, marker, cleanup, chunk, keepalive, meta, revoke).

Readers ignore tasks of projects without meta (``store.ClusterState``), so a
project is invisible until step 4. A submit that fails with an exception
deletes what it wrote; one that is killed leaves invisible keys that the next
submit of the same id removes (step 2).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from etcd3 import etcdrpc

from workhive.coordinator.etcd import codec
from workhive.coordinator.etcd.claims import ClaimRequest, Claims
from workhive.coordinator.etcd.client import EtcdClient, prefix_end
from workhive.coordinator.etcd.errors import AmbiguousResult, EtcdError, InvalidArgument
from workhive.coordinator.etcd.keys import Keyspace
from workhive.coordinator.etcd.session import LeaseKeeper
from workhive.coordinator.etcd.txn import (
    DEFAULT_MAX_TXN_OPS,
    Fence,
    TxnItem,
    cmp_create,
    cmp_version,
    merged,
    op_delete,
    op_put,
)
from workhive.coordinator.etcd.types import ItemResult, Outcome, ProjectMeta, TaskRecord
from workhive.coordinator.model import ProjectSpec, TaskKey, TaskState

SUBMIT_LEASE_TTL = 10
SUBMIT_WRITERS = 4  # chunk txns in flight at once
# Below etcd's default --max-request-bytes (1.5 MiB), with room for the compares.
DEFAULT_MAX_TXN_BYTES = 1024 * 1024


class ProjectExists(InvalidArgument):
    """A project with this id is already visible."""


class SubmitConflict(EtcdError):
    """Another submit of the same project is in progress."""


def _records(spec: ProjectSpec) -> list[TaskRecord]:
    """Tasks without dependencies start READY, others PENDING, at attempt 1."""
    return [
        TaskRecord(
            TaskKey(spec.id, t.id), t, TaskState.PENDING if t.depends_on else TaskState.READY, 1
        )
        for t in spec.tasks
    ]


@dataclass(frozen=True, slots=True)
class Submission:
    """A project as its one-txn submit stores it: the meta and every task
    record (their ``mod_revision`` 0: not written yet)."""

    meta: ProjectMeta
    records: tuple[TaskRecord, ...]

    def stored(self, revision: int) -> tuple[ProjectMeta, list[TaskRecord]]:
        """The meta and records as etcd holds them once written at ``revision``."""
        return replace(self.meta, mod_revision=revision), [
            replace(r, mod_revision=revision, create_revision=revision) for r in self.records
        ]


def submission(spec: ProjectSpec, clock: Callable[[], float] = time.time) -> Submission:
    """What submitting ``spec`` writes (tasks without dependencies READY)."""
    meta = ProjectMeta(
        id=spec.id, task_count=len(spec.tasks), submitted_at=clock(), source=spec.source
    )
    return Submission(meta, tuple(_records(spec)))


def submission_item(ks: Keyspace, s: Submission) -> TxnItem:
    """The one-txn submit of ``s`` (module doc) without the fence: the
    records and the meta, guarded by ``Version(meta) == 0``, no chunked
    submit of it in progress (``Version(marker) == 0``) and no leftovers
    (``Version == 0`` over the whole task range)."""
    pid = s.meta.id
    tasks_prefix = ks.tasks_prefix(pid)
    no_leftovers = etcdrpc.Compare(
        result=etcdrpc.Compare.EQUAL,
        target=etcdrpc.Compare.VERSION,
        key=tasks_prefix,
        range_end=prefix_end(tasks_prefix),
        version=0,
    )
    puts = [(ks.task(r.key), codec.encode_task(r)) for r in s.records]
    puts.append((ks.meta(pid), codec.encode_meta(s.meta)))
    cmps = [cmp_version(ks.meta(pid), 0), cmp_version(_marker(ks, pid), 0), no_leftovers]
    return TxnItem(cmps, [op_put(k, v) for k, v in puts], puts=puts)


def _in_one_txn(
    client: EtcdClient, item: TxnItem, s: Submission, fence: Fence | None
) -> ProjectMeta | None:
    """The one-txn submit (module doc; ``item`` is :func:`submission_item` of
    ``s``); None when a compare failed or the outcome is unknown and not
    ours: the full protocol decides then."""
    meta_key, value = item.puts[-1]
    cmps = ([fence.compare()] if fence else []) + item.compares
    try:
        r = client.txn_raw(cmps, item.success, retry=False)
    except AmbiguousResult:
        got = client.get(meta_key)
        if got is None or got.value != value:
            return None  # not applied (or someone else's project: the protocol says so)
        return replace(s.meta, mod_revision=got.mod_revision)
    return replace(s.meta, mod_revision=int(r.header.revision)) if r.succeeded else None


def submit_and_claim(
    claims: Claims, subs: Sequence[Submission], reqs: Sequence[ClaimRequest], fence: Fence
) -> tuple[list[ItemResult], list[ItemResult]]:
    """Store small projects with the first claims of their tasks, fenced:
    each project and its claims are one item (all or nothing), so a task
    is claimed in the very txn that makes it visible. ``reqs`` must name
    tasks of ``subs`` (records as :func:`submission` built them). One
    result per project (``CONFLICT``: nothing of it written; the full
    protocol says why) and one per claim, in input order. A refused project
    whose meta etcd holds with our very bytes was written by this call
    after all (a batch re-run after a txn named an expired lease, or an
    ambiguous outcome): ``OK`` at the meta's revision, its claims with it."""
    by_project: dict[str, list[int]] = {}
    for j, r in enumerate(reqs):
        by_project.setdefault(r.record.key.project, []).append(j)
    items = [
        merged(
            [submission_item(claims.ks, s)]
            + [claims.claim_item(reqs[j], fence) for j in by_project.get(s.meta.id, [])]
        )
        for s in subs
    ]
    stored = claims.run(items, fence)
    for i, s in enumerate(subs):
        if stored[i].outcome is Outcome.CONFLICT:
            kv = claims.client.get(claims.ks.meta(s.meta.id))
            if kv is not None and kv.value == codec.encode_meta(s.meta):
                stored[i] = ItemResult(Outcome.OK, kv.mod_revision)
    made = [ItemResult(Outcome.CONFLICT)] * len(reqs)
    for s, o in zip(subs, stored, strict=True):
        for j in by_project.get(s.meta.id, []):
            made[j] = Claims.claimed(reqs[j], o)
    return stored, made


def _marker(ks: Keyspace, pid: str) -> bytes:
    return ks.project_prefix(pid) + b"submit"


def _chunks(
    puts: list[tuple[bytes, bytes]], max_ops: int, max_bytes: int
) -> list[list[tuple[bytes, bytes]]]:
    """Consecutive runs of ``puts`` with at most ``max_ops`` items and
    ``max_bytes`` of keys plus values each; an item over ``max_bytes`` alone."""
    chunks: list[list[tuple[bytes, bytes]]] = []
    size = 0
    for key, value in puts:
        n = len(key) + len(value)
        if not chunks or len(chunks[-1]) >= max_ops or size + n > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append((key, value))
        size += n
    return chunks


def submit_project(
    client: EtcdClient,
    keyspace: Keyspace,
    spec: ProjectSpec,
    *,
    max_ops: int = DEFAULT_MAX_TXN_OPS,
    max_bytes: int = DEFAULT_MAX_TXN_BYTES,
    fence: Fence | None = None,
    keeper: LeaseKeeper | None = None,
    on_chunk: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.time,
    lease_ttl: int = SUBMIT_LEASE_TTL,
) -> ProjectMeta:
    """Write ``spec`` so that it appears all at once (see module doc).

    Tasks without dependencies start READY, others PENDING. ``fence`` (optional)
    also requires the leader term on every txn. ``on_chunk(n)`` runs after each
    task chunk commits, in chunk order (tests use it to kill a submit halfway). ``max_ops`` and
    ``max_bytes`` bound each chunk (module doc). ``lease_ttl``
    bounds how long a killed submit blocks a new submit of the same id.

    Raises:
        ProjectExists: the project is already visible (nothing written).
        SubmitConflict: another submit of this project holds the marker.
        FenceLost / EtcdError: nothing of this submit stays visible.
    """
    pid = spec.id
    meta_key, marker = keyspace.meta(pid), _marker(keyspace, pid)
    tasks_prefix = keyspace.tasks_prefix(pid)
    fence_cmps = [fence.compare()] if fence else []
    whole = submission(spec, clock)
    meta = whole.meta
    item = submission_item(keyspace, whole)
    puts = item.puts[:-1]  # the task records (the meta is last)
    if len(puts) < max_ops - 1 and sum(len(k) + len(v) for k, v in puts) < max_bytes:
        once = _in_one_txn(client, item, whole, fence)
        if once is not None:
            return once
    own_keeper = keeper is None
    keeper = keeper or LeaseKeeper(client)
    lease = keeper.grant(lease_ttl)
    try:
        r = client.txn_raw(
            [*fence_cmps, cmp_version(meta_key, 0), cmp_version(marker, 0)],
            [op_put(marker, b"{}", lease)],
            retry=False,
        )
        if not r.succeeded:
            if client.get(meta_key) is not None:
                raise ProjectExists(f"project {pid!r} already exists")
            raise SubmitConflict(f"project {pid!r} is being submitted by someone else")
        marker_rev = int(r.header.revision)
        guard = [*fence_cmps, cmp_version(meta_key, 0), cmp_create(marker, marker_rev)]
        # Leftovers of a killed submit: invisible, removed now.
        client.txn_raw(
            guard,
            [
                etcdrpc.RequestOp(
                    request_delete_range=etcdrpc.DeleteRangeRequest(
                        key=tasks_prefix, range_end=prefix_end(tasks_prefix)
                    )
                )
            ],
            retry=True,
        )

        def write(chunk: list[tuple[bytes, bytes]]) -> None:
            ops = [op_put(key, value) for key, value in chunk]
            r = client.txn_raw(guard, ops, retry=True)  # idempotent puts, guarded
            if not r.succeeded:
                raise SubmitConflict(f"submit of {pid!r} lost its marker or fence")

        chunks = _chunks(puts, max(1, max_ops - 1), max_bytes)  # compares are few
        refreshed = time.monotonic()
        # Chunks are independent (guarded puts, the meta comes last), so several
        # are in flight: etcd commits concurrent txns with one disk sync. Leaving
        # the pool waits for those in flight, so the cleanup below runs after them.
        with ThreadPoolExecutor(SUBMIT_WRITERS, thread_name_prefix="submit") as pool:
            pending = [pool.submit(write, chunk) for chunk in chunks]
            try:
                for n, done in enumerate(pending, start=1):
                    done.result()
                    if time.monotonic() - refreshed > lease_ttl / 3:
                        keeper.refresh(lease)
                        refreshed = time.monotonic()
                    if on_chunk is not None:
                        on_chunk(n)
            except BaseException:
                for f in pending:
                    f.cancel()
                raise
        r = client.txn_raw(
            guard, [op_put(meta_key, codec.encode_meta(meta)), op_delete(marker)], retry=True
        )
        if not r.succeeded:
            got = client.get(meta_key)
            if got is None:
                raise SubmitConflict(f"submit of {pid!r} lost its marker or fence")
            # A retried (ambiguous) commit that had applied: ours if the marker is gone.
        return ProjectMeta(
            id=meta.id,
            task_count=meta.task_count,
            submitted_at=meta.submitted_at,
            source=meta.source,
            mod_revision=int(r.header.revision),
        )
    except BaseException:
        with contextlib.suppress(Exception):
            # Remove what we wrote, only if still invisible and still ours.
            m = client.get(marker)
            if m is not None and m.lease == lease and client.get(meta_key) is None:
                client.txn_raw(
                    [cmp_version(meta_key, 0), cmp_create(marker, m.create_revision)],
                    [
                        etcdrpc.RequestOp(
                            request_delete_range=etcdrpc.DeleteRangeRequest(
                                key=tasks_prefix, range_end=prefix_end(tasks_prefix)
                            )
                        ),
                        op_delete(marker),
                    ],
                    retry=True,
                )
        raise
    finally:
        with contextlib.suppress(Exception):
            keeper.revoke(lease)
        if own_keeper:
            keeper.close()
