"""``PlanFollowing``: projects that follow a precomputed plan (CP-SAT or list).

A plan gives each agent a sequence of tasks. While a project follows one, its
READY tasks wait for their planned agent instead of sitting in the ready heaps
(``TaskRecord.planned``) and are handed out in plan order as the agent has a
free slot or prefetch room (``dispatch_planned``). A plan is dropped, and a
replan requested, when it stops describing reality: an agent joined or left,
a task's duration drifted beyond ``plan_drift_tolerance``, tasks were added,
a claim was lost, or nothing of the project is assigned or running any more
("plan stalled"). Dropping it puts its waiting READY tasks back into the
ready heaps.

Invariant: a project is in ``planned`` exactly while ``plan`` is set; a task
is ``planned`` only while its project follows a plan and the task is PENDING
or READY in one of the plan's sequences. Pure: ``now`` is passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from workhive.coordinator.model import TaskState
from workhive.coordinator.scheduling.agent_pool import AgentPool
from workhive.coordinator.scheduling.config import SchedulerConfig
from workhive.coordinator.scheduling.events import Command, RequestReplan
from workhive.coordinator.scheduling.planner_types import Plan
from workhive.coordinator.scheduling.policies import follows_plan
from workhive.coordinator.scheduling.ready_queues import ReadyQueues
from workhive.coordinator.scheduling.records import (
    AgentRecord,
    DispatchStats,
    ProjectRecord,
    TaskRecord,
)

__all__ = ["PlanFollowing"]

_P, _R, _A, _RUN = TaskState.PENDING, TaskState.READY, TaskState.ASSIGNED, TaskState.RUNNING


class PlanFollowing:
    """Set, follow and drop project plans (see the module docstring).

    ``assign`` places a task on an agent (the state machine's transition);
    ``emit`` appends a command to the current step's output."""

    def __init__(
        self,
        config: SchedulerConfig,
        pool: AgentPool,
        queues: ReadyQueues,
        stats: DispatchStats,
        assign: Callable[[TaskRecord, AgentRecord, float], None],
        emit: Callable[[Command], None],
    ) -> None:
        self.config = config
        self.pool = pool
        self.queues = queues
        self.stats = stats
        self.assign = assign
        self.emit = emit
        self.planned: dict[str, ProjectRecord] = {}

    def set_plan(self, p: ProjectRecord, plan: Plan | None) -> None:
        """Follow ``plan`` (``None`` or a policy that ignores plans: stop
        following without a replan); a plan naming an unknown agent is ignored."""
        if plan is None or not follows_plan(self.config.policy):
            if p.plan:
                self.drop_plan(p, "plan cleared", request=False)
            return
        if any(aid not in self.pool.agents for aid in plan.sequences):
            return
        p.plan = plan
        self.planned[p.id] = p
        p.plan_seqs = {}
        for aid, ids in plan.sequences.items():
            p.plan_seqs[aid] = deque(
                p.by_id[i] for i in ids if i in p.by_id and not p.by_id[i].state.terminal
            )
        for seq in p.plan_seqs.values():
            for t in seq:
                if t.state in (_P, _R):
                    t.planned = True
                    t.heap_id = -1

    def drop_plan(self, p: ProjectRecord, reason: str, request: bool = True) -> None:
        """Stop following ``p``'s plan; with ``request``, ask for a new one."""
        if p.plan is None:
            return
        p.plan = None
        p.plan_seqs = {}
        self.planned.pop(p.id, None)
        for t in p.tasks:
            if t.planned:
                t.planned = False
                if t.state is _R:
                    self.queues.push_ready(t)
        if request:
            self.stats.replans += 1
            self.emit(RequestReplan(p.id, reason))

    def drop_overdue(self, now: float) -> None:
        """Drop the plan of a project whose running task has already overrun
        its planned duration by more than ``plan_drift_tolerance``: the plan is
        wrong from that moment, not only once the task ends (the tasks planned
        behind it would wait for it). Looks at every running task once."""
        tol = self.config.plan_drift_tolerance
        for a in list(self.pool.agents.values()):
            for t in list(a.running.values()):
                p = t.project
                if p.plan is None or t.started_at is None:
                    continue
                pt = p.plan.tasks.get(t.spec.id)
                if pt is None:
                    continue
                want = pt.finish - pt.start
                ran = now - t.started_at
                if ran - want > tol * max(want, 1e-9) + 1e-9:
                    self.drop_plan(p, f"task {t.spec.id} running {ran:g}s, planned {want:g}s")

    def dispatch_planned(self, now: float) -> None:
        """Hand each agent the next tasks of its sequences while it has room
        (after dropping plans proved wrong by an overrunning task)."""
        self.drop_overdue(now)
        for p in list(self.planned.values()):
            for aid, seq in p.plan_seqs.items():
                a = self.pool.agents.get(aid)
                if a is None:
                    continue
                while seq and (a.free_slots > 0 or a.queue_room > 0):
                    t = seq[0]
                    if t.state is _P:
                        break
                    seq.popleft()
                    if t.state is _R:
                        t.planned = False
                        self.assign(t, a, now)
            if p.plan and not any(t.state in (_A, _RUN) for t in p.tasks) and p.remaining:
                self.drop_plan(p, "plan stalled")

    def forget(self, project_id: str) -> None:
        """A finished, cancelled or deleted project follows no plan any more."""
        self.planned.pop(project_id, None)
