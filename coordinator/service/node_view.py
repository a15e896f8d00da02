"""The narrow view of a replica that the servicers get (not the node itself).

``CoordinatorNode`` implements :class:`NodeView`; while it leads, its leader
implements :class:`LeaderView`. The servicers translate the wire to these
calls and back; they never hold the node, its etcd client or the leader's
fence. The cluster state handed out is read-only by contract: only the
leader (through the mirror's own mutators) changes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol, TypeVar

from workhive.coordinator.etcd import ClusterState, ProjectMeta
from workhive.coordinator.leader.growth import Added
from workhive.coordinator.leader.ports import Gone, Hello, Report
from workhive.coordinator.metrics import Metrics
from workhive.coordinator.model import (
    AgentInfo,
    LeaderInfo,
    ProjectSpec,
    TaskKey,
    TaskRef,
    TaskTiming,
)
from workhive.coordinator.scheduling import Addition, SchedulerMetrics
from workhive.coordinator.service.agent_hub import AgentHub

T = TypeVar("T")


class LeaderView(Protocol):
    """What the servicers may ask of this replica's leader."""

    def hello(self, hello: Hello) -> None: ...
    def report(self, report: Report) -> None: ...
    def gone(self, gone: Gone) -> None: ...
    def start_requested(self, agent_id: str, ref: TaskRef) -> None: ...
    def progress_reported(
        self, agent_id: str, ref: TaskRef, fraction: float, note: str
    ) -> None: ...
    def drain(self, agent_id: str) -> None: ...
    def claim_wanted(self, agent_id: str, seq: int, wait: float) -> None: ...

    def cancel(self, project_id: str, reason: str) -> asyncio.Future[int]:
        """Queued at once; the future may be abandoned (see the leader's docs)."""
        ...

    def add_tasks(self, addition: Addition, source: str = "<request>") -> asyncio.Future[Added]:
        """Queued at once; raises ``AddRefused`` when refused (``leader.growth``)."""
        ...

    def registered(self, agent_id: str) -> AgentInfo | None:
        """The agent's registration as the leader's mirror holds it."""
        ...

    def cluster(self) -> ClusterState | None:
        """The leader's mirror, read-only (None until it is rebuilt)."""
        ...

    async def project_seen(self, project_id: str, wait: float) -> bool:
        """Whether the mirror shows the project within ``wait`` seconds."""
        ...

    def loads(self) -> dict[str, float]: ...
    def speed_factors(self) -> dict[str, float]: ...
    def scheduler_metrics(self) -> SchedulerMetrics: ...

    def task_timing(self, key: TaskKey) -> TaskTiming | None:
        """The scheduler's deadline, next retry and last failure of ``key``."""
        ...


class NodeView(Protocol):
    """What the servicers may ask of the replica."""

    @property
    def id(self) -> str: ...
    @property
    def leader_info(self) -> LeaderInfo | None: ...
    @property
    def leader_changes(self) -> int: ...
    @property
    def hub(self) -> AgentHub: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def agent_lease_ttl(self) -> int: ...
    @property
    def heartbeat_interval_ms(self) -> int: ...

    def leading(self) -> LeaderView | None:
        """This replica's leader while it leads, else None."""
        ...

    @property
    def etcd_targets(self) -> str:
        """The etcd endpoints this replica uses, for error messages."""
        ...

    async def etcd_problem(self) -> str:
        """'' when etcd answered just now; else why this replica's view (the
        leader's mirror) may be out of date (docs/client.md, "stale")."""
        ...

    async def read_state(self, fn: Callable[[ClusterState, LeaderView | None], T]) -> T:
        """``fn(state, leader)`` over this replica's freshest consistent view:
        the leader's mirror (with the leader), a new leader's mirror once
        rebuilt, a follower's warm mirror, or an etcd snapshot (without it);
        ``fn`` only reads and copies (it may run on a thread).
        ``coordinator/state_reads.py`` has the order and why."""
        ...

    async def submit(self, spec: ProjectSpec) -> ProjectMeta:
        """Store a project atomically, fenced by this replica's term."""
        ...

    async def delete_project(self, pid: str, compact: bool) -> int:
        """Delete a project in one fenced txn; its revision, 0 if absent."""
        ...

    async def registered_lease(self, agent_id: str) -> int | None:
        """The lease carrying the agent's registration in etcd (0: not
        registered; None: etcd did not answer)."""
        ...

    async def refresh_lease(self, lease_id: int) -> int | None: ...
    async def agent_lease(self, resume: int) -> tuple[int, bool]: ...
    async def register_agent(self, info: AgentInfo, lease: int) -> None: ...
