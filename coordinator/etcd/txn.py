"""Transaction building blocks: compares, ops, the leader fence, and batched CAS.

:func:`run_batch` packs independent CAS items into as few txns as etcd's
``max-txn-ops`` allows (compare and success lists each hold at most
``max_ops``, and so do the distinct keys compared). When a txn fails, one
read of every compared key tells which items broke their compares: those are
reported ``CONFLICT`` and the rest are retried, so one conflict never sinks
the batch. When the leader fence fails, nothing applied and every remaining
item is ``NOT_LEADER``. (The read is a second round trip, paid only by a
failed txn; it used to be the failure branch of every txn, built and sent
each time.)

An ambiguous txn (deadline hit after sending) is resolved by reading back the
keys it writes: if every put holds our bytes at one common mod revision (and
every deleted key is gone) it applied; otherwise it is re-run, which is safe
because every item is a CAS (a late apply of the first send then makes the
re-run report CONFLICT, never a double write).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from etcd3 import etcdrpc

from workhive.coordinator.etcd.client import EtcdClient, kv_from_pb
from workhive.coordinator.etcd.errors import AmbiguousResult
from workhive.coordinator.etcd.types import ItemResult, KeyValue, Outcome

DEFAULT_MAX_TXN_OPS = 128

_C = etcdrpc.Compare
EQUAL = _C.EQUAL
_VERSION, _CREATE, _MOD, _VALUE, _LEASE = _C.VERSION, _C.CREATE, _C.MOD, _C.VALUE, _C.LEASE


def cmp_version(key: bytes, version: int) -> Any:
    return _C(result=EQUAL, target=_VERSION, key=key, version=version)


def cmp_create(key: bytes, revision: int) -> Any:
    return _C(result=EQUAL, target=_CREATE, key=key, create_revision=revision)


def cmp_mod(key: bytes, revision: int) -> Any:
    return _C(result=EQUAL, target=_MOD, key=key, mod_revision=revision)


def cmp_lease(key: bytes, lease: int) -> Any:
    return _C(result=EQUAL, target=_LEASE, key=key, lease=lease)


def op_put(key: bytes, value: bytes, lease: int = 0) -> Any:
    return etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=key, value=value, lease=lease))


def op_delete(key: bytes) -> Any:
    return etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(key=key))


def op_range(key: bytes, *, keys_only: bool = False) -> Any:
    return etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=key, keys_only=keys_only))


def compare_holds(c: Any, kv: KeyValue | None) -> bool:
    """Evaluate an EQUAL compare on one key locally against that key as read
    (None = absent)."""
    t = c.target
    if t == _VERSION:
        return bool((kv.version if kv else 0) == c.version)
    if t == _CREATE:
        return bool((kv.create_revision if kv else 0) == c.create_revision)
    if t == _MOD:
        return bool((kv.mod_revision if kv else 0) == c.mod_revision)
    if t == _LEASE:
        return bool((kv.lease if kv else 0) == c.lease)
    if t == _VALUE:
        return bool(kv is not None and kv.value == c.value)
    return False  # pragma: no cover


@dataclass(frozen=True, slots=True)
class Fence:
    """The leader's fencing token: its election key and that key's create revision.

    Rule 1: every leader write carries ``compare()``; once the key is gone
    (lease lost, resigned) or re-created, every such txn fails.
    """

    key: bytes
    term: int

    def compare(self) -> Any:
        return cmp_create(self.key, self.term)


@dataclass(slots=True)
class TxnItem:
    """One independent CAS unit of a batch: its compares and its writes.

    ``puts`` is ``(key, value)`` for every put in ``success`` and ``deletes``
    every deleted key (required: used to keep duplicate keys out of one txn
    and to read back an ambiguous txn).
    """

    compares: list[Any]
    success: list[Any]
    puts: list[tuple[bytes, bytes]] = field(default_factory=list)
    deletes: list[bytes] = field(default_factory=list)


def merged(items: Sequence[TxnItem]) -> TxnItem:
    """One all-or-nothing item holding every item's compares and writes."""
    return TxnItem(
        [c for it in items for c in it.compares],
        [op for it in items for op in it.success],
        puts=[p for it in items for p in it.puts],
        deletes=[d for it in items for d in it.deletes],
    )


def fenced_txn(
    client: EtcdClient,
    fence: Fence | None,
    compares: Sequence[Any],
    success: Sequence[Any],
    failure: Sequence[Any] = (),
) -> Any:
    """A single txn with the leader fence prepended (rule 1). Returns the raw reply.

    Not retried: ambiguous results raise :class:`AmbiguousResult`.
    """
    cmps = ([fence.compare()] if fence else []) + list(compares)
    return client.txn_raw(cmps, success, failure, retry=False)


def _read_keys(
    client: EtcdClient, keys: Sequence[bytes], max_ops: int
) -> dict[bytes, KeyValue | None]:
    out: dict[bytes, KeyValue | None] = {}
    for i in range(0, len(keys), max_ops):
        chunk = keys[i : i + max_ops]
        r = client.txn_raw([], [op_range(k) for k in chunk], retry=True)
        for k, resp in zip(chunk, r.responses, strict=True):
            kvs = resp.response_range.kvs
            out[k] = kv_from_pb(kvs[0]) if kvs else None
    return out


def _read_compared(
    client: EtcdClient, fence: Fence | None, chunk: Sequence[tuple[int, TxnItem]]
) -> Callable[[Any], bool]:
    """After a failed txn: whether each of its compares holds now, from one
    read txn of every key it compared (and the fence key; values only where
    a compare needs them) and a count of every key range compared (only
    ``Version == 0`` over a range is supported: the range is empty). Read
    after the failure, not in its failure branch: the branch's ops were
    built and sent with every txn and are needed only by the few that fail."""
    keys_only: dict[bytes, bool] = {fence.key: True} if fence else {}
    ranges: list[tuple[bytes, bytes]] = []
    for _, it in chunk:
        for c in it.compares:
            if c.range_end:
                ranges.append((c.key, c.range_end))
                continue
            full = c.target in (_LEASE, _VALUE)
            keys_only[c.key] = keys_only.get(c.key, True) and not full
    ops = [op_range(k, keys_only=ko) for k, ko in keys_only.items()]
    ops += [
        etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=k, range_end=end, count_only=True))
        for k, end in ranges
    ]
    r = client.txn_raw([], ops, retry=True)
    seen: dict[bytes, KeyValue | None] = {}
    for k, resp in zip(keys_only, r.responses, strict=False):
        kvs = resp.response_range.kvs
        seen[k] = kv_from_pb(kvs[0]) if kvs else None
    counts = {
        span: int(resp.response_range.count)
        for span, resp in zip(ranges, r.responses[len(keys_only) :], strict=True)
    }

    def holds(c: Any) -> bool:
        if c.range_end:
            empty = counts[(c.key, c.range_end)] == 0
            return bool(c.target == _VERSION and c.version == 0 and empty)
        return compare_holds(c, seen[c.key])

    return holds


def _applied(client: EtcdClient, items: Sequence[TxnItem], max_ops: int) -> int:
    """Read back an ambiguous txn: its revision if it applied, else 0."""
    keys = [k for it in items for k, _ in it.puts] + [k for it in items for k in it.deletes]
    got = _read_keys(client, keys, max_ops)
    revs = set()
    for it in items:
        for k, v in it.puts:
            kv = got[k]
            if kv is None or kv.value != v:
                return 0
            revs.add(kv.mod_revision)
        if any(got[k] is not None for k in it.deletes):
            return 0
    if len(revs) > 1:
        return 0
    return revs.pop() if revs else client.revision()


def _pack(
    items: Sequence[tuple[int, TxnItem]], max_ops: int, fenced: bool
) -> list[list[tuple[int, TxnItem]]]:
    """Greedy packing within ``max_ops`` per list; an item writing a key already
    written in the current txn starts a new one (etcd rejects duplicate keys)."""
    chunks: list[list[tuple[int, TxnItem]]] = []
    cur: list[tuple[int, TxnItem]] = []
    n_cmp = n_succ = int(fenced)
    keys: set[bytes] = set()
    written: set[bytes] = set()
    for idx, it in items:
        new_keys = {c.key for c in it.compares} - keys
        writes = {k for k, _ in it.puts} | set(it.deletes)
        if cur and (
            n_cmp + len(it.compares) > max_ops
            or n_succ + len(it.success) > max_ops
            or len(keys) + len(new_keys) + int(fenced) > max_ops
            or not writes.isdisjoint(written)
        ):
            chunks.append(cur)
            cur, n_cmp, n_succ, keys, written = [], int(fenced), int(fenced), set(), set()
            new_keys = {c.key for c in it.compares}
        cur.append((idx, it))
        n_cmp += len(it.compares)
        n_succ += len(it.success)
        keys |= new_keys
        written |= writes
    if cur:
        chunks.append(cur)
    return chunks


def run_batch(
    client: EtcdClient,
    items: Sequence[TxnItem],
    *,
    fence: Fence | None = None,
    max_ops: int = DEFAULT_MAX_TXN_OPS,
    max_rounds: int = 4,
    on_txn: Callable[[int], None] | None = None,
) -> list[ItemResult]:
    """Apply independent CAS items in as few txns as possible; one result per item.

    ``on_txn(n)`` (metrics hook) is called with the item count of every txn sent.
    """
    results: list[ItemResult | None] = [None] * len(items)
    todo: list[tuple[int, TxnItem]] = list(enumerate(items))
    not_leader = False
    for _round in range(max_rounds):
        if not todo:
            break
        retry: list[tuple[int, TxnItem]] = []
        for chunk in _pack(todo, max_ops, fence is not None):
            if not_leader:
                for idx, _ in chunk:
                    results[idx] = ItemResult(Outcome.NOT_LEADER)
                continue
            cmps: list[Any] = [fence.compare()] if fence else []
            succ: list[Any] = []
            for _, it in chunk:
                cmps.extend(it.compares)
                succ.extend(it.success)
            if on_txn:
                on_txn(len(chunk))
            try:
                resp = client.txn_raw(cmps, succ, [], retry=False)
            except AmbiguousResult:
                rev = _applied(client, [it for _, it in chunk], max_ops)
                if rev:
                    for idx, _ in chunk:
                        results[idx] = ItemResult(Outcome.OK, rev)
                else:
                    retry.extend(chunk)
                continue
            if resp.succeeded:
                rev = int(resp.header.revision)
                for idx, _ in chunk:
                    results[idx] = ItemResult(Outcome.OK, rev)
                continue
            holds = _read_compared(client, fence, chunk)
            if fence and not holds(fence.compare()):
                not_leader = True
                for idx, _ in chunk:
                    results[idx] = ItemResult(Outcome.NOT_LEADER)
                continue
            for idx, it in chunk:
                if all(holds(c) for c in it.compares):
                    retry.append((idx, it))
                else:
                    results[idx] = ItemResult(Outcome.CONFLICT)
        todo = [(i, it) for i, it in retry if results[i] is None]
    final: list[ItemResult] = []
    for r in results:
        final.append(
            r
            if r is not None
            else ItemResult(Outcome.NOT_LEADER if not_leader else Outcome.CONFLICT)
        )
    return final
