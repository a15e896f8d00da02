"""What the parts of one leadership term share.

One object per term, owned by the turn loop (``driver.LeaderDriver``): the
cluster mirror and the scheduler (both replaced together on a re-list), the
agent port, the fenced writer, the clock and the latency bookkeeping. Only
the turn loop's task touches it, so no part needs a lock; the mirror is
changed only through its own mutators (``ClusterState.fold_*``/``apply``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace

from workhive.coordinator.etcd import ClusterState, Fence
from workhive.coordinator.leader.clock import Clock
from workhive.coordinator.leader.ports import AgentPort
from workhive.coordinator.leader.writes import Writer
from workhive.coordinator.metrics import Metrics
from workhive.coordinator.model import Claim, ProjectSpec, TaskKey
from workhive.coordinator.scheduling import SchedulerConfig, SchedulerState


@dataclass
class Latencies:
    """When tasks became ready or were stolen, for the latency histograms."""

    metrics: Metrics
    clock: Clock
    ready_at: dict[TaskKey, float] = field(default_factory=dict)
    stolen_at: dict[TaskKey, float] = field(default_factory=dict)
    children: defaultdict[TaskKey, list[str]] = field(default_factory=lambda: defaultdict(list))

    def submitted(self, spec: ProjectSpec) -> None:
        now = self.clock.monotonic()
        for t in spec.tasks:
            if not t.depends_on:
                self.ready_at[TaskKey(spec.id, t.id)] = now
            for d in t.depends_on:
                self.children[TaskKey(spec.id, d)].append(t.id)

    def ready(self, key: TaskKey) -> None:
        self.ready_at[key] = self.clock.monotonic()

    def stolen(self, key: TaskKey, at: float) -> None:
        self.stolen_at[key] = at

    def succeeded(self, key: TaskKey, mirror: ClusterState) -> None:
        """Children whose parents all succeeded are ready now; a chained one
        (docs/scheduling.md, "Chains run back to back") started then: 0 s."""
        for child in self.children.get(key, ()):
            ck = TaskKey(key.project, child)
            rec = mirror.tasks.get(ck)
            if rec is not None and not mirror.unfinished(key.project, rec.spec.depends_on):
                claim = mirror.claims.get(ck)
                if claim is not None and claim.after:
                    self.metrics.assignment_latency.observe(0.0)
                else:
                    self.ready(ck)

    def started(self, key: TaskKey) -> None:
        """The start of ``key`` was granted: record the latencies it closes."""
        now = self.clock.monotonic()
        since = self.ready_at.pop(key, None)
        if since is not None:
            self.metrics.assignment_latency.observe(now - since)
        stolen = self.stolen_at.pop(key, None)
        if stolen is not None:
            self.metrics.redistribution_latency.observe(now - stolen)


@dataclass
class Term:
    """The shared state of one term (see module docstring)."""

    fence: Fence
    port: AgentPort
    writer: Writer
    metrics: Metrics
    clock: Clock
    config: SchedulerConfig
    mirror: ClusterState | None = None
    state: SchedulerState = field(init=False)
    latencies: Latencies = field(init=False)

    def __post_init__(self) -> None:
        self.state = SchedulerState(self.config)
        self.latencies = Latencies(self.metrics, self.clock)

    def view(self) -> ClusterState:
        """The mirror (only called once it is rebuilt)."""
        assert self.mirror is not None
        return self.mirror

    def inputs_of(self, key: TaskKey) -> dict[str, str]:
        """The results of ``key``'s parents (parent id -> JSON text), as the
        mirror holds them: what an assignment of ``key`` carries."""
        mirror = self.view()
        rec = mirror.tasks.get(key)
        out: dict[str, str] = {}
        for d in rec.spec.depends_on if rec is not None else ():
            r = mirror.results.get(TaskKey(key.project, d))
            if r is not None and r.result_json:
                out[d] = r.result_json
        return out

    def assign(self, claim: Claim) -> None:
        """Push the claimed task to its agent with its parents' results; a
        chained claim names only the dependencies not yet succeeded (a claim
        sent again, after a reconnect, may have none left to wait for)."""
        mirror = self.view()
        spec = mirror.tasks[claim.key].spec
        if claim.after:
            claim = replace(claim, after=mirror.unfinished(claim.key.project, claim.after))
        self.port.assign(claim, spec, self.fence.term, self.inputs_of(claim.key))

    def lease_of(self, agent_id: str) -> int:
        """The agent's lease: its open session's, else its registration's."""
        lease = self.port.session_lease(agent_id)
        if lease:
            return lease
        info = self.mirror.agents.get(agent_id) if self.mirror else None
        return info.lease_id if info else 0
