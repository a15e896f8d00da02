"""Snapshots and a stand-in replica for the dashboard's unit tests (no etcd)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from workhive.coordinator.dashboard.snapshot import Snapshot
from workhive.coordinator.etcd import ClusterState, Keyspace, ProjectMeta, TaskRecord
from workhive.coordinator.model import (
    AgentInfo,
    Claim,
    LeaderInfo,
    TaskKey,
    TaskResult,
    TaskSpec,
    TaskState,
)
from workhive.coordinator.settings import Settings


def chain_state(pid: str = "p", n: int = 4) -> ClusterState:
    """``t0 -> t1 -> ... -> t{n-1}``, nothing run yet; two agents."""
    cs = ClusterState(Keyspace("/t/"), revision=10)
    cs.projects[pid] = ProjectMeta(pid, n, submitted_at=1000.0, mod_revision=9)
    for i in range(n):
        deps = (f"t{i - 1}",) if i else ()
        key = TaskKey(pid, f"t{i}")
        cs.fold_task(TaskRecord(key, TaskSpec(f"t{i}", depends_on=deps, estimate=2.0)))
    cs.agents["a1"] = AgentInfo("a1", frozenset({"py"}), slots=2, lease_id=0x11)
    cs.agents["a2"] = AgentInfo("a2", slots=1, lease_id=0x22)
    return cs


def succeed(cs: ClusterState, key: TaskKey, agent: str = "a1", at: float = 1010.0) -> None:
    cs.claims.pop(key, None)
    cs.results[key] = TaskResult(
        key, TaskState.SUCCEEDED, agent=agent, attempt=1, duration=2.0, finished_at=at
    )


def claim(cs: ClusterState, key: TaskKey, agent: str, started: bool, fence: int = 50) -> None:
    cs.claims[key] = Claim(key, agent, attempt=1, started=started, fence=fence)


def snap_of(
    cs: ClusterState, at: float | None = None, leader: LeaderInfo | None = None, **kw: Any
) -> Snapshot:
    return Snapshot(
        taken_at=time.time() if at is None else at,
        revision=cs.revision,
        source="standby",
        node_id="c0",
        leader=leader or LeaderInfo("c1", "127.0.0.1:1", 5),
        leader_changes=0,
        projects=dict(cs.projects),
        tasks=dict(cs.tasks),
        claims=dict(cs.claims),
        results=dict(cs.results),
        agents=dict(cs.agents),
        candidates=dict(cs.candidates),
        **kw,
    )


class FakeStandby:
    """``StandbyMirror.read`` over a state the test mutates."""

    def __init__(self, cs: ClusterState) -> None:
        self.cs = cs

    def read(self, fn: Callable[[ClusterState], Any]) -> Any:
        return fn(self.cs)


@dataclass
class FakeNode:
    """The attributes of ``CoordinatorNode`` the dashboard uses (a follower)."""

    cs: ClusterState
    settings: Settings = field(default_factory=Settings)
    id: str = "c0"
    driver: Any = None
    leader_changes: int = 1
    leader_info: LeaderInfo | None = field(default_factory=lambda: LeaderInfo("c1", "x:1", 5))

    @property
    def standby(self) -> FakeStandby:
        return FakeStandby(self.cs)

    @property
    def refresher(self) -> FakeRefresher:
        return FakeRefresher()


class FakeRefresher:
    """``LeaseRefresher.last_keepalive``: agent a1's lease was kept alive 0.5 s ago."""

    def last_keepalive(self, lease_id: int) -> float | None:
        return 0.5 if lease_id == 0x11 else None


def run_async(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """``asyncio.run(main())`` on a thread of its own: Playwright's sync API
    keeps an event loop running on the test thread while the browser lives."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            failure.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if failure:
        raise failure[0]
