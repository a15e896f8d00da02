"""Deleting a finished project from etcd (``workhive delete`` and retention).

One fenced txn (rule 1) deletes everything the project owns: its meta, its
task records (``projects/<pid>/``), its results (``results/<pid>/``) and any
claim left under ``claims/<pid>/``. The txn compares that the meta exists, so
a second delete, or one racing another, reports ``False`` and writes nothing.
The meta goes in the same revision as the rest: a reader never sees half a
project. Whether the project may be deleted (finished) is the caller's
decision, made on the leader's mirror.

``compact`` frees the history the delete left behind (etcd keeps every old
version until compacted): watchers from before that revision re-list.
"""

from __future__ import annotations

from typing import Any

from etcd3 import etcdrpc

from workhive.coordinator.etcd.client import EtcdClient, prefix_end
from workhive.coordinator.etcd.errors import FenceLost
from workhive.coordinator.etcd.keys import Keyspace
from workhive.coordinator.etcd.txn import Fence, fenced_txn, op_range


def _delete_prefix(prefix: bytes) -> Any:
    return etcdrpc.RequestOp(
        request_delete_range=etcdrpc.DeleteRangeRequest(key=prefix, range_end=prefix_end(prefix))
    )


def _exists(key: bytes) -> Any:
    """Compare: ``key`` exists (its version is not 0)."""
    c = etcdrpc.Compare
    return c(result=c.NOT_EQUAL, target=c.VERSION, key=key, version=0)


def delete_project(client: EtcdClient, ks: Keyspace, pid: str, fence: Fence) -> int:
    """Delete project ``pid``; returns the revision of the delete, 0 if there
    was no such project. Raises ``FenceLost`` when this replica no longer leads."""
    meta = ks.meta(pid)
    claims = ks.claims_prefix + pid.encode() + b"/"
    reply = fenced_txn(
        client,
        fence,
        [_exists(meta)],
        [
            _delete_prefix(ks.project_prefix(pid)),
            _delete_prefix(ks.results_project_prefix(pid)),
            _delete_prefix(claims),
        ],
        [op_range(meta, keys_only=True)],
    )
    if reply.succeeded:
        return int(reply.header.revision)
    if reply.responses[0].response_range.kvs:
        raise FenceLost()  # the meta is there: the fence is what failed
    return 0


def compact(client: EtcdClient, revision: int) -> None:
    """Compact etcd's history up to ``revision`` (frees deleted versions)."""
    client.compact(revision, physical=False)
