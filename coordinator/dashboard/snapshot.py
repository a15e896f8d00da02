"""Cheap, immutable copies of a replica's view of the cluster.

Contract (docs/dashboard.md, "Where the data comes from"): a
:class:`Snapshot` holds shallow copies of the mirror's dicts. Their values
are frozen dataclasses, so a snapshot can be read from any thread while the
mirror keeps changing. Taking one costs a few dict copies:

- the leader copies its driver's mirror on the event loop, between two awaits
  (the driver owns it there and mutates it only on that loop);
- a follower copies its warm standby mirror on a worker thread under the
  mirror's lock (``StandbyMirror.read``);
- with neither (``warm_standby`` off, or between a hand-over and the new
  leader's first state) it reads one consistent etcd snapshot on a worker
  thread; callers bound how often (``Model`` in ``model.py``).

Leader-only figures (the scheduler's seed metrics, predicted loads, which
agents hold a session here) are copied on the loop too; followers leave them
empty.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from workhive.coordinator.etcd import Candidate, ClusterState, ProjectMeta, TaskRecord, snapshot
from workhive.coordinator.model import (
    AgentInfo,
    Claim,
    LeaderInfo,
    TaskKey,
    TaskProgress,
    TaskResult,
)

if TYPE_CHECKING:
    from workhive.coordinator.node import CoordinatorNode


@dataclass(frozen=True)
class Snapshot:
    """One replica's view at ``revision`` (see module docstring)."""

    taken_at: float
    revision: int
    source: str  # "leader" | "standby" | "etcd"
    node_id: str
    leader: LeaderInfo | None
    leader_changes: int
    projects: dict[str, ProjectMeta] = field(default_factory=dict)
    tasks: dict[TaskKey, TaskRecord] = field(default_factory=dict)
    claims: dict[TaskKey, Claim] = field(default_factory=dict)
    results: dict[TaskKey, TaskResult] = field(default_factory=dict)
    agents: dict[str, AgentInfo] = field(default_factory=dict)
    candidates: dict[str, Candidate] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # leader only
    loads: dict[str, float] = field(default_factory=dict)  # leader only
    speeds: dict[str, float] = field(default_factory=dict)  # leader only (agent_speeds)
    connected: frozenset[str] | None = None  # leader only: agents with a session here
    progress: dict[TaskKey, TaskProgress] = field(default_factory=dict)  # leader only (by fence)


def _from(cs: ClusterState, node: CoordinatorNode, source: str) -> Snapshot:
    """Copy ``cs``'s dicts (no await inside: one consistent view)."""
    return Snapshot(
        taken_at=time.time(),
        revision=cs.revision,
        source=source,
        node_id=node.id,
        leader=node.leader_info,
        leader_changes=max(0, node.leader_changes - 1),
        projects=dict(cs.projects),
        tasks=dict(cs.tasks),
        claims=dict(cs.claims),
        results=dict(cs.results),
        agents=dict(cs.agents),
        candidates=dict(cs.candidates),
    )


def leader_metrics(node: CoordinatorNode) -> dict[str, float]:
    """The seed's metrics as ``GetStatus`` reports them (leader only; else empty)."""
    driver = node.driver
    if driver is None:
        return {}
    m = driver.scheduler_metrics()
    return {
        "total_steals": float(m.total_steals),
        "average_steal_size": m.average_steal_size,
        "load_imbalance": m.load_imbalance,
        "redistribution_latency_seconds": m.redistribution_latency,
        "last_steal_time": m.last_steal_time or 0.0,
        "parallelization_efficiency": m.parallelization_efficiency,
        "lock_contention_rate": m.lock_contention_rate,
        "agent_utilization": m.utilization,
        "critical_path_progress": m.critical_path_progress,
        "assignments": float(m.assignments),
    }


async def take_snapshot(node: CoordinatorNode, *, allow_etcd: bool = True) -> Snapshot | None:
    """A snapshot of ``node``'s view; ``None`` when only an etcd read would do
    and ``allow_etcd`` is false (the caller then keeps its last one)."""
    driver = node.driver
    mirror = driver.cluster() if driver is not None else None
    if driver is not None and mirror is not None:
        snap = _from(mirror, node, "leader")
        return replace(
            snap,
            metrics=leader_metrics(node),
            loads=driver.loads(),
            speeds=driver.speed_factors(),
            connected=frozenset(node.hub.conns),
            progress=driver.progress.latest(),
        )
    standby = node.standby
    if standby is not None:
        got = await asyncio.to_thread(standby.read, lambda cs: _from(cs, node, "standby"))
        if got is not None:
            return got
    if not allow_etcd:
        return None

    def read() -> Snapshot:
        rev, kvs = snapshot(node.client, node.ks.root)
        return _from(ClusterState.from_kvs(node.ks, rev, kvs), node, "etcd")

    return await asyncio.to_thread(read)
