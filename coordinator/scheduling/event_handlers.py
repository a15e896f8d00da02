"""``EventHandlers``: how each event changes ``SchedulerState``.

One handler per event type (``_apply`` dispatches); handlers are idempotent
where the leader may deliver an event twice (a project submitted or a batch
added once; a report from an agent that no longer holds the task is ignored),
and ``StateRestored`` rebuilds the whole state from etcd's records (agents,
projects, results, claims, plans) after a leadership change.

Invariant: after each handler the records, agent pool, ready heaps and plan
following agree (a READY unplanned task has a live ready-heap entry; an
ASSIGNED task is in its agent's queue; a RUNNING one holds a slot). A layer of
``SchedulerState``.
"""

from __future__ import annotations

from dataclasses import replace

from workhive.coordinator.model import AgentInfo, ProjectSpec, TaskKey, TaskState
from workhive.coordinator.scheduling.dispatch import Dispatch
from workhive.coordinator.scheduling.events import (
    AgentJoined,
    AgentLeft,
    AssignRejected,
    ClaimLost,
    ClaimUnanswered,
    ClaimWanted,
    ClaimWithdrawn,
    Event,
    PlanUpdated,
    ProjectCancelled,
    ProjectDeleted,
    ProjectSubmitted,
    StartRejected,
    StateRestored,
    StealRejected,
    StealTick,
    TaskFailed,
    TasksAdded,
    TaskStarted,
    TaskSucceeded,
)
from workhive.coordinator.scheduling.graph import analyse
from workhive.coordinator.scheduling.growth import Addition, extend_analysis
from workhive.coordinator.scheduling.planner_types import Plan
from workhive.coordinator.scheduling.priorities import effective_priorities
from workhive.coordinator.scheduling.records import (
    AgentRecord,
    ProjectRecord,
    TaskRecord,
)

_P, _R, _A, _RUN = TaskState.PENDING, TaskState.READY, TaskState.ASSIGNED, TaskState.RUNNING
_OK, _FAIL, _CXL = TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED

__all__ = ["EventHandlers"]


class EventHandlers(Dispatch):
    """Event application (see the module docstring)."""

    def _reset(self) -> None:
        """Forget everything but configuration and learned durations (``SchedulerState``)."""
        raise NotImplementedError

    def _apply(self, ev: Event) -> None:
        match ev:
            case TaskSucceeded():
                self._on_succeeded(ev)
            case TaskStarted():
                self._on_started(ev)
            case StealTick():
                self._steal(ev.now, None)
            case ProjectSubmitted():
                self._on_submitted(ev.spec, ev.plan)
            case TasksAdded():
                self._on_added(ev.addition)
            case ClaimWanted() | ClaimWithdrawn():
                self._on_claim_request(ev)
            case AgentJoined():
                self._on_joined(ev.agent)
            case AgentLeft():
                self._on_left(ev.agent_id, ev.now)
            case TaskFailed():
                self._on_failed(ev)
            case ClaimLost():
                t = self._task(ev.key)
                if t and t.agent and t.agent.info.id == ev.agent_id and t.state in (_A, _RUN):
                    self._lose(t, "claim lost")
            case AssignRejected():
                self._on_assign_rejected(ev)
            case StartRejected():
                self._on_start_rejected(ev)
            case StealRejected():
                self._on_steal_rejected(ev)
            case ProjectCancelled():
                self._on_cancelled(ev.project_id, ev.reason)
            case ProjectDeleted():
                self._on_deleted(ev.project_id)
            case PlanUpdated():
                p = self._projects.get(ev.project_id)
                if p and not p.finished:
                    self._plans.set_plan(p, ev.plan)
            case StateRestored():
                self._on_restored(ev)

    def _on_deleted(self, project_id: str) -> None:
        """Forget a finished project (deleting an unfinished one is refused
        before it reaches etcd); its tasks left in the lazy heaps are terminal
        and are skipped there."""
        p = self._projects.get(project_id)
        if p is None or not p.finished:
            return
        del self._projects[project_id]
        self._plans.planned.pop(project_id, None)
        self._timers.forget(project_id)
        for key in [k for k in self._pool.branch_owner if k[0] == project_id]:
            del self._pool.branch_owner[key]

    def _on_submitted(self, spec: ProjectSpec, plan: Plan | None) -> None:
        if spec.id in self._projects:
            return  # idempotent: a project is submitted once
        p = self._new_project(spec)
        for t in p.tasks:
            if t.waiting == 0:
                t.state = _R
                t.ready_seq = self._seq.next()
        self._plans.set_plan(p, plan)
        if not p.plan:
            for t in p.tasks:
                if t.state is _R:
                    self._queues.push_ready(t)
        self._check_finished(p)

    def _new_project(self, spec: ProjectSpec) -> ProjectRecord:
        p = ProjectRecord(spec)
        self._projects[spec.id] = p
        for i, ts in enumerate(spec.tasks):
            t = TaskRecord(TaskKey(spec.id, ts.id), ts, i, p)
            p.tasks.append(t)
            p.by_id[ts.id] = t
        self._rerank(p)
        return p

    def _rerank(self, p: ProjectRecord) -> None:
        pred = self.durations.predict
        an = p.analysis = analyse(p.spec, pred)
        eff = effective_priorities([t.spec.priority for t in p.tasks], an.children, an.order)
        for t, r, w, e in zip(p.tasks, an.rank, an.weight, eff, strict=True):
            t.rank, t.eff = r, e
            if t.agent is None:  # agents' loads hold what was predicted at assignment
                t.predicted = w
        p.left = sum(t.predicted for t in p.tasks if not t.state.terminal)
        p.rank_version = self.durations.version
        p.calibration = self.durations.calibration
        p.since_rank = 0

    def _on_added(self, add: Addition) -> None:
        """New tasks join a project (docs/scheduling.md, "Growing a project")."""
        p = self._projects.get(add.project_id)
        if p is None or p.analysis is None or any(t.id in p.by_id for t in add.tasks):
            return  # idempotent: a batch is added once
        blocked = add.blocked_deps()
        for x, ns in blocked.items():
            t = p.by_id[x]
            t.spec = replace(t.spec, depends_on=(*t.spec.depends_on, *ns))
            t.waiting += len(ns)
            if t.state is _R:
                t.state, t.heap_id, t.planned = _P, -1, False
            elif t.state is _RUN:  # chained, not started (check_addition): wait for ns too
                self._give_back(t, f"blocked by {', '.join(ns)}")
        p.analysis, changed = extend_analysis(
            p.analysis, add.tasks, blocked, self.durations.predict
        )
        fresh = []
        for ts in add.tasks:
            t = TaskRecord(TaskKey(add.project_id, ts.id), ts, len(p.tasks), p)
            t.rank, t.predicted = p.analysis.rank[t.index], p.analysis.weight[t.index]
            p.tasks.append(t)
            p.by_id[ts.id] = t
            fresh.append(t)
        p.grown()
        for t in fresh:
            t.waiting = sum(1 for d in t.spec.depends_on if p.by_id[d].state is not _OK)
        p.remaining += len(fresh)
        p.unestimated = p.unestimated or any(t.estimate is None for t in add.tasks)
        p.finished = None
        self._plans.drop_plan(p, f"{len(fresh)} tasks added")
        for i in changed:
            t = p.tasks[i]
            t.rank = p.analysis.rank[i]
            if t.state is _R and not t.planned:
                self._queues.push_ready(t)  # re-keyed; the old heap entry is stale
        for t in fresh:
            if t.waiting == 0:
                self._make_ready(t)

    def _on_claim_request(self, ev: ClaimWanted | ClaimWithdrawn) -> None:
        """Pull mode (docs/scheduling.md, "Pull claims"): an open request is a
        free slot; one whose wait ended unanswered is answered empty."""
        a = self._pool.agents.get(ev.agent_id)
        if a is None or not a.info.pull:
            if isinstance(ev, ClaimWithdrawn):
                self._out.append(ClaimUnanswered(ev.agent_id, ev.seq))
            return
        if isinstance(ev, ClaimWanted):
            if ev.seq not in a.asks:
                a.asks.append(ev.seq)
        elif ev.seq in a.asks:
            a.asks.remove(ev.seq)
            self._out.append(ClaimUnanswered(ev.agent_id, ev.seq))
        self._pool.touch(a)

    def _on_joined(self, info: AgentInfo) -> None:
        a = self._pool.agents.get(info.id)
        if a is not None:
            a.asks.clear()  # a new session asks again
            if a.info.capabilities != info.capabilities:
                a.group = self._pool.group(info.capabilities)
            a.info = info
        else:
            a = self._pool.join(info, self._seq.next())
            self._mark_speed(a)  # known from an earlier session
            # A plan is a schedule for the agents it was made for: more capacity
            # makes it wrong (its tasks would never reach the newcomer).
            for p in list(self._plans.planned.values()):
                self._plans.drop_plan(p, f"agent {info.id} joined")
        self._pool.touch(a)

    def _on_left(self, agent_id: str, now: float) -> None:
        a = self._pool.agents.pop(agent_id, None)
        if a is None:
            return
        a.alive = False
        self._pool.dirty.pop(agent_id, None)
        self._pool.queued.pop(agent_id, None)
        for t in [*a.running.values(), *a.queue]:
            self._lose(t, f"agent {agent_id} left")
        for p in list(self._plans.planned.values()):
            if p.plan and agent_id in p.plan.sequences:
                self._plans.drop_plan(p, f"agent {agent_id} left")

    def _on_started(self, ev: TaskStarted) -> None:
        t = self._task(ev.key)
        if not t or not t.agent or t.agent.info.id != ev.agent_id:
            return
        if t.state is _A:
            a = t.agent
            a.queue.remove(t)
            if not a.queue:
                self._pool.queued.pop(a.info.id, None)
            self._run(t, a, ev.now)
            self._pool.touch(a)
        if t.started_at is None:
            t.started_at = ev.now
            self._timers.deadlines.arm(t.key, t.attempt, ev.now, t.spec.timeout)

    def _on_succeeded(self, ev: TaskSucceeded) -> None:
        t = self._task(ev.key)
        if not t or t.state.terminal:
            return
        p = t.project
        if t.started_at is not None and t.lag_sample:
            self._pool.observe_lag(ev.now - t.started_at - ev.duration)
        self._observe_speed(t, ev)
        ran_on = t.agent
        self._release(t, succeeded=True)
        t.state = _OK
        self._stats.busy += ev.duration
        drift = self.durations.observe(t.spec, ev.duration)
        p.left -= t.predicted
        if p.analysis and p.analysis.on_critical_path(t.index):
            p.cp_done += p.analysis.weight[t.index]
        if p.plan and t.spec.id in p.plan.tasks:
            pt = p.plan.tasks[t.spec.id]
            want = pt.finish - pt.start
            if abs(ev.duration - want) > self.config.plan_drift_tolerance * max(want, 1e-9) + 1e-9:
                self._plans.drop_plan(
                    p, f"task {t.spec.id} took {ev.duration:g}s, planned {want:g}s"
                )
        p.since_rank += 1
        if (
            drift
            and (p.unestimated or p.calibration != self.durations.calibration)
            and p.rank_version != self.durations.version
            and p.since_rank >= max(16, len(p.tasks) // 50)
        ):
            self._rerank(p)
            self._queues.rebuild()
        for c in p.analysis.children[t.index] if p.analysis else ():
            ct = p.tasks[c]
            ct.waiting -= 1
            if ct.waiting == 0 and ct.state is _P:
                self._make_ready(ct)
        p.remaining -= 1
        self._check_finished(p)
        if ran_on is not None and ran_on.alive and ran_on.chain_full:
            ran_on.chain_full = False
            for r in list(ran_on.running.values()):
                self._chain_after(r, ran_on, ev.now)  # room for the chains to go on

    def _observe_speed(self, t: TaskRecord, ev: TaskSucceeded) -> None:
        """Feed ``agent_speeds`` with what the agent took against the current
        prediction (a kind seen fewer than 3 times predicts nothing yet)."""
        a = self._pool.agents.get(ev.agent_id)
        spec = t.spec
        if a is None or (spec.estimate is None and self.durations.samples.get(spec.kind, 0) < 3):
            return
        self.speeds.observe(ev.agent_id, self.durations.predict(spec), ev.duration)
        self._mark_speed(a)

    def _mark_speed(self, a: AgentRecord) -> None:
        """Copy what ``agent_speeds`` knows of ``a`` into the record its heap keys read."""
        a.speed_class = self.speeds.klass(a.info.id)
        a.explored = self.speeds.explored(a.info.id)

    def _on_failed(self, ev: TaskFailed) -> None:
        t = self._task(ev.key)
        if not t or t.state.terminal:
            return
        if not ev.spent:
            self._release(t)
            self._requeue(t, f"released: {ev.reason}", spent=False)
        elif ev.retryable and t.attempt < t.spec.max_attempts:
            self._release(t)
            self._requeue(t, f"failed: {ev.reason}")
        else:
            self._release(t)
            self._fail(t, ev.reason)

    def _on_assign_rejected(self, ev: AssignRejected) -> None:
        t = self._task(ev.key)
        if not t or not t.agent or t.agent.info.id != ev.agent_id or t.state not in (_A, _RUN):
            return
        self._stats.failed_claims += 1
        a = t.agent
        seq = a.answered.pop(t.key, None)
        if seq is not None:
            a.asks.appendleft(seq)  # the request is still open
        self._release(t)
        self._make_ready(t)

    def _on_start_rejected(self, ev: StartRejected) -> None:
        t = self._task(ev.key)
        if not t or not t.agent or t.agent.info.id != ev.agent_id or t.state is not _RUN:
            return
        a = t.agent
        del a.running[t.key]
        self._unchain(t, a)
        t.state = _A
        t.started_at = None
        a.queue.insert(0, t)
        self._pool.queued[a.info.id] = a
        self._pool.touch(a)

    def _on_steal_rejected(self, ev: StealRejected) -> None:
        t = self._task(ev.key)
        self._stats.rejected_steals += 1
        if not t or not t.agent or t.agent.info.id != ev.to_agent or t.state not in (_A, _RUN):
            return
        victim = self._pool.agents.get(ev.from_agent)
        self._release(t)
        if victim is None:
            self._lose(t, "steal rejected and victim gone")
            return
        t.state = _A
        t.agent = victim
        victim.queue.insert(0, t)
        victim.load += t.predicted
        self._pool.queued[victim.info.id] = victim
        self._pool.touch(victim)

    def _on_cancelled(self, project_id: str, reason: str) -> None:
        p = self._projects.get(project_id)
        if not p or p.finished:
            return
        self._plans.planned.pop(project_id, None)
        p.plan = None
        for t in p.tasks:
            if not t.state.terminal:
                self._cancel(t, reason)
        self._check_finished(p)

    def _on_restored(self, ev: StateRestored) -> None:
        out = self._out
        self._reset()
        self._out = out
        for info in ev.agents:
            self._on_joined(info)
        results = {r.key: r for r in ev.results}
        for spec in ev.projects:
            p = self._new_project(spec)
            for t in p.tasks:
                r = results.get(t.key)
                if r is not None and r.state.terminal:
                    t.state = r.state
                    t.attempt = r.attempt
                    p.remaining -= 1
                else:
                    t.attempt = ev.attempts.get(t.key, 0)
            for t in p.tasks:
                t.waiting = sum(1 for d in t.spec.depends_on if p.by_id[d].state is not _OK)
        for c in sorted(ev.claims, key=lambda c: (c.fence, str(c.key))):
            ct = self._task(c.key)
            if ct is None or ct.state.terminal:
                continue
            t = ct
            t.attempt = c.attempt
            a = self._pool.agents.get(c.agent)
            if a is None:
                t.state = _RUN if c.started else _R  # provisional, for _lose
                self._lose(t, f"agent {c.agent} gone")
                continue
            t.agent = a
            a.load += t.predicted
            if c.started:
                t.state = _RUN
                a.running[t.key] = t
                t.started_at = ev.now  # a restored task's deadline counts from here
                t.lag_sample = False  # but it did not start here
                self._timers.deadlines.arm(t.key, t.attempt, ev.now, t.spec.timeout)
            else:
                t.state = _A
                a.queue.append(t)
                self._pool.queued[a.info.id] = a
            self._pool.touch(a)
        for spec in ev.projects:
            p = self._projects[spec.id]
            for t in p.tasks:
                if t.state is not _P:
                    continue
                dead = any(p.by_id[d].state in (_FAIL, _CXL) for d in t.spec.depends_on)
                if dead:
                    self._cancel(t, "a dependency failed")
                elif t.waiting == 0:
                    self._make_ready(t, push=False)
            self._plans.set_plan(p, ev.plans.get(spec.id))
            if not p.plan:
                for t in p.tasks:
                    if t.state is _R:
                        self._queues.push_ready(t)
            self._check_finished(p)
