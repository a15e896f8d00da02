"""A barrier: a fenced write whose echo in the watch marks a point in etcd's history.

A leader's mirror follows etcd through the watch, so it may lag writes
etcd already committed (the last writes of the previous leader). Before it
acts on the mirror where a stale view would do harm (re-sending a resumed
agent's claims: docs/failover.md, "Resync after a barrier"), the leader
writes the barrier key and waits until its watch has delivered that write:
a watch delivers in revision order, so everything committed before the
barrier is then in the mirror.

Contract: ``write_barrier`` is one txn: the leader's fence and a put of
``Keyspace.barrier`` (no lease; each write replaces the last) with a value
no other barrier has, so a txn whose outcome was lost (a timeout, a
failover) is read back as this barrier, never as an earlier one. It returns
``OK`` with the write's revision, ``NOT_LEADER`` when the fence failed, or
``CONFLICT`` when it could not tell whether the write was applied.
"""

from __future__ import annotations

import uuid

from workhive.coordinator.etcd.client import EtcdClient
from workhive.coordinator.etcd.keys import Keyspace
from workhive.coordinator.etcd.txn import Fence, TxnItem, op_put, run_batch
from workhive.coordinator.etcd.types import ItemResult

__all__ = ["write_barrier"]


def write_barrier(client: EtcdClient, keyspace: Keyspace, fence: Fence) -> ItemResult:
    """Write the barrier under ``fence``; its result carries the revision."""
    key, value = keyspace.barrier, f"{fence.term} {uuid.uuid4().hex}".encode()
    item = TxnItem([], [op_put(key, value)], puts=[(key, value)])
    return run_batch(client, [item], fence=fence)[0]
