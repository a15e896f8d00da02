"""etcd state layer: the only package that talks to etcd (imports ``etcd3``).

Public API (see ``docs/etcd-layer.md``): a client with failover, leases and
sessions, the fenced leader election, claims as batched CAS txns, atomic
project submit, consistent snapshot + resumable watches.
"""

from workhive.coordinator.etcd.barrier import write_barrier
from workhive.coordinator.etcd.claims import ClaimRequest, Claims, Completion, Finish, Steal
from workhive.coordinator.etcd.client import EtcdClient
from workhive.coordinator.etcd.election import Election, Observer, current_leader, observe
from workhive.coordinator.etcd.errors import (
    AmbiguousResult,
    Compacted,
    EtcdError,
    EtcdUnavailable,
    FenceLost,
    InvalidArgument,
    LeaseLost,
)
from workhive.coordinator.etcd.grow import (
    Growth,
    GrowthTooLarge,
    add_tasks,
    complete_and_grow,
    grown,
)
from workhive.coordinator.etcd.handoff import complete_and_claim
from workhive.coordinator.etcd.keys import DEFAULT_PREFIX, Keyspace
from workhive.coordinator.etcd.lease_refresher import LeaseRefresher
from workhive.coordinator.etcd.session import LeaseKeeper, Session, SessionState
from workhive.coordinator.etcd.snapshot import Feed, snapshot
from workhive.coordinator.etcd.standby import StandbyMirror
from workhive.coordinator.etcd.store import ClusterState, MirrorChanges, Store
from workhive.coordinator.etcd.submit import (
    ProjectExists,
    Submission,
    SubmitConflict,
    submission,
    submit_and_claim,
    submit_project,
)
from workhive.coordinator.etcd.txn import Fence, fenced_txn
from workhive.coordinator.etcd.types import (
    Candidate,
    ItemResult,
    KeyValue,
    Outcome,
    ProjectMeta,
    TaskRecord,
    effective_state,
)
from workhive.coordinator.etcd.watch import EventType, WatchBatch, Watcher, WatchEvent

__all__ = [
    "DEFAULT_PREFIX",
    "AmbiguousResult",
    "Candidate",
    "ClaimRequest",
    "Claims",
    "ClusterState",
    "Compacted",
    "Completion",
    "Election",
    "EtcdClient",
    "EtcdError",
    "EtcdUnavailable",
    "EventType",
    "Feed",
    "Fence",
    "FenceLost",
    "Finish",
    "Growth",
    "GrowthTooLarge",
    "InvalidArgument",
    "ItemResult",
    "KeyValue",
    "Keyspace",
    "LeaseKeeper",
    "LeaseLost",
    "LeaseRefresher",
    "MirrorChanges",
    "Observer",
    "Outcome",
    "ProjectExists",
    "ProjectMeta",
    "Session",
    "SessionState",
    "StandbyMirror",
    "Steal",
    "Store",
    "Submission",
    "SubmitConflict",
    "TaskRecord",
    "WatchBatch",
    "WatchEvent",
    "Watcher",
    "add_tasks",
    "complete_and_claim",
    "complete_and_grow",
    "current_leader",
    "effective_state",
    "fenced_txn",
    "grown",
    "observe",
    "snapshot",
    "submission",
    "submit_and_claim",
    "submit_project",
    "write_barrier",
]
