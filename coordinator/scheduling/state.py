"""``SchedulerState``: THE scheduler, a pure synchronous state machine.

One mutator, ``handle(*events) -> list[Command]`` (modelled on dask's
``worker_state_machine``). The leader's driver turns each command into one
fenced etcd transaction (or gRPC push) and reports failures back as events
(``AssignRejected``, ``StartRejected``, ``StealRejected``, ``ClaimLost``). The
state machine applies its own commands optimistically. The simulator drives the
very same object. No I/O, no clock, no randomness: the same events give the
same commands.

Task lifecycle here: PENDING (deps unfinished) -> READY (in a ready heap or
waiting for its planned agent) -> ASSIGNED (in an agent's prefetch queue) ->
RUNNING (holds one of the agent's slots) -> SUCCEEDED | FAILED | CANCELLED.
A lost claim sends the task back to READY, with ``attempt + 1`` if it had
started (only a start counts as an attempt); a task that had started and has
used ``max_attempts`` fails instead, which cancels every descendant.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from workhive.coordinator.model import AgentInfo, ProjectSpec, TaskKey, TaskSpec, TaskState
from workhive.coordinator.scheduling.config import SchedulerConfig
from workhive.coordinator.scheduling.deadlines import DEADLINE_EXCEEDED, Deadlines, RevokeTask
from workhive.coordinator.scheduling.durations import DurationModel
from workhive.coordinator.scheduling.events import (
    AgentJoined,
    AgentLeft,
    AssignRejected,
    AssignTask,
    CancelTask,
    ClaimLost,
    ClaimUnanswered,
    ClaimWanted,
    ClaimWithdrawn,
    Command,
    Event,
    MarkTaskFailed,
    PlanUpdated,
    ProjectCancelled,
    ProjectDeleted,
    ProjectFinished,
    ProjectSubmitted,
    RequestReplan,
    RequeueTask,
    StartRejected,
    StartTask,
    StateRestored,
    StealRejected,
    StealTask,
    StealTick,
    TaskFailed,
    TasksAdded,
    TaskStarted,
    TaskSucceeded,
)
from workhive.coordinator.scheduling.graph import GraphAnalysis, analyse
from workhive.coordinator.scheduling.growth import Addition, extend_analysis
from workhive.coordinator.scheduling.metrics import (
    SchedulerMetrics,
    load_imbalance,
    lock_contention_rate,
)
from workhive.coordinator.scheduling.placement import QUEUE, SLOT, Placement
from workhive.coordinator.scheduling.planner_types import Plan
from workhive.coordinator.scheduling.policies import (
    agent_key,
    follows_plan,
    task_key,
    uses_scarcity,
)
from workhive.coordinator.scheduling.priorities import effective_priorities
from workhive.coordinator.scheduling.retry_policy import RetryWaits, backoff_delay
from workhive.coordinator.scheduling.scarcity import Needs
from workhive.coordinator.scheduling.stealing import AgentQueue, QueuedTask, plan_steals

__all__ = ["SchedulerState"]

_P, _R, _A, _RUN = TaskState.PENDING, TaskState.READY, TaskState.ASSIGNED, TaskState.RUNNING
_OK, _FAIL, _CXL = TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED
_SLOT, _QUEUE = SLOT, QUEUE
_RANKED_POLICIES = ("default", "critical-path")


class _Task:
    __slots__ = (
        "agent",
        "attempt",
        "eff",
        "heap_id",
        "index",
        "key",
        "last_moved",
        "planned",
        "predicted",
        "project",
        "qheap_id",
        "rank",
        "ready_seq",
        "spec",
        "started_at",
        "state",
        "stolen_at",
        "waiting",
    )

    def __init__(self, key: TaskKey, spec: TaskSpec, index: int, project: _Project) -> None:
        self.key = key
        self.spec = spec
        self.index = index
        self.project = project
        self.state = _P
        self.attempt = 0
        self.agent: _Agent | None = None
        self.waiting = len(spec.depends_on)
        self.rank = 0.0
        self.eff = spec.priority  # effective priority (priorities.effective_priorities)
        self.predicted = 0.0
        self.ready_seq = 0
        self.heap_id = -1
        self.qheap_id = -1
        self.last_moved: float | None = None
        self.stolen_at: float | None = None
        self.started_at: float | None = None
        self.planned = False


class _Project:
    __slots__ = (
        "analysis",
        "by_id",
        "calibration",
        "cp_done",
        "finished",
        "left",
        "plan",
        "plan_seqs",
        "rank_version",
        "remaining",
        "since_rank",
        "spec",
        "tasks",
        "unestimated",
    )

    def __init__(self, spec: ProjectSpec) -> None:
        self.spec = spec
        self.tasks: list[_Task] = []
        self.by_id: dict[str, _Task] = {}
        self.calibration = 0  # DurationModel.calibration at the last rerank
        self.analysis: GraphAnalysis | None = None
        self.remaining = len(spec.tasks)
        self.plan: Plan | None = None
        self.plan_seqs: dict[str, deque[_Task]] = {}
        self.rank_version = -1
        self.since_rank = 0
        self.unestimated = any(t.estimate is None for t in spec.tasks)
        self.cp_done = 0.0
        self.left = 0.0  # predicted seconds of unfinished work
        self.finished: str | None = None


class _Agent:
    __slots__ = (
        "alive",
        "answered",
        "asks",
        "group",
        "info",
        "load",
        "queue",
        "queue_stamp",
        "running",
        "seq",
        "slot_stamp",
    )

    def __init__(self, info: AgentInfo, seq: int, group: _Group) -> None:
        self.info = info
        self.seq = seq
        self.group = group
        self.running: dict[TaskKey, _Task] = {}
        self.queue: list[_Task] = []
        self.load = 0.0
        self.slot_stamp = -1
        self.queue_stamp = -1
        self.alive = True
        self.asks: deque[int] = deque()  # a pull agent's open requests (pull.py)
        self.answered: dict[TaskKey, int] = {}  # request each assignment answered

    @property
    def free_slots(self) -> int:
        free = self.info.slots - len(self.running)
        return min(free, len(self.asks)) if self.info.pull else free

    @property
    def queue_room(self) -> int:
        return 0 if self.info.pull else self.info.prefetch - len(self.queue)


@dataclass(slots=True)
class _Group:
    caps: frozenset[str]
    heaps: tuple[list[tuple[tuple[float, ...], int, _Agent]], ...] = field(
        default_factory=lambda: ([], [])
    )


@dataclass(slots=True)
class _Stats:
    steals: int = 0
    steal_events: int = 0
    rejected_steals: int = 0
    last_steal: float | None = None
    latency_sum: float = 0.0
    latency_n: int = 0
    assignments: int = 0
    failed_claims: int = 0
    busy: float = 0.0
    first_event: float | None = None
    replans: int = 0


class SchedulerState(Placement):
    """The scheduler. Create once per leadership term (or restore with
    ``StateRestored``); feed events in order; execute the returned commands."""

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        self.config = config or SchedulerConfig()
        self.durations = DurationModel(
            alpha=self.config.ewma_alpha,
            default=self.config.default_duration,
            drift=self.config.duration_drift,
        )
        self._reset()

    def _reset(self) -> None:
        self._projects: dict[str, _Project] = {}
        self._agents: dict[str, _Agent] = {}
        self._groups: dict[frozenset[str], _Group] = {}
        self._eligible: dict[frozenset[str], list[_Group]] = {}
        self._ready: dict[frozenset[str], list[tuple[tuple[float, ...], int, _Task]]] = {}
        # the same ready tasks by upward rank alone (the tail rule, priorities.holds_the_end)
        self._by_rank: dict[frozenset[str], list[tuple[float, int, _Task]]] = {}
        self._branch_owner: dict[tuple[str, str], _Agent] = {}
        self._queued: dict[str, _Agent] = {}  # agents with a non-empty queue
        # queued tasks by urgency, for free slots to take from saturated agents
        self._qheap: list[tuple[tuple[float, ...], int, _Task]] = []
        self._dirty: dict[str, _Agent] = {}
        self._planned: dict[str, _Project] = {}
        self._seq = 0
        self._push = 0
        self._stats = _Stats()
        self._out: list[Command] = []
        self._push_queued_later: list[_Task] = []
        self._needs: Needs | None = None
        self._now = 0.0
        self._slot_total = -1
        self._feeders: dict[TaskKey, _Task] = {}  # running tasks feeding needy work
        self._deadlines = Deadlines()  # running tasks with a timeout (deadlines.py)
        self._waits = RetryWaits()  # retries waiting out their backoff (retry_policy.py)
        self._event_now = 0.0  # ``now`` of the event being applied
        self._last_failure: dict[TaskKey, str] = {}  # reason of the last spent attempt

    # ------------------------------------------------------------ public API

    def handle(self, *events: Event) -> list[Command]:
        """Apply events in order, then assign/steal; return the commands."""
        out: list[Command] = []
        self._out = out
        now = 0.0
        for ev in events:
            now = self._event_now = ev.now
            if self._stats.first_event is None:
                self._stats.first_event = now
            self._apply(ev)
        if events:
            self._expire(now)
            self._dispatch(now)
            for t in self._push_queued_later:
                if t.state is _A:
                    self._push_queued(t)
            self._push_queued_later.clear()
        self._out = []
        return out

    def task_state(self, key: TaskKey) -> TaskState | None:
        """State of ``key``; ``None`` for an unknown task."""
        t = self._task(key)
        return t.state if t else None

    def task_attempt(self, key: TaskKey) -> int:
        """Current attempt of ``key`` (0: never assigned)."""
        t = self._task(key)
        return t.attempt if t else 0

    def deadline_at(self, key: TaskKey) -> float | None:
        """When the running ``key`` is revoked (``None``: not running or no timeout)."""
        t = self._task(key)
        if t is None or t.state is not _RUN or t.started_at is None or t.spec.timeout is None:
            return None
        return t.started_at + t.spec.timeout

    def retry_at(self, key: TaskKey) -> float | None:
        """When ``key``, waiting out its backoff, becomes ready again."""
        t = self._task(key)
        return self._waits.ready_at(key) if t is not None and t.state is _P else None

    def last_failure(self, key: TaskKey) -> str:
        """Reason of ``key``'s last failed attempt ("" none, or not since this
        leader's restore)."""
        return self._last_failure.get(key, "")

    def next_wakeup(self) -> float | None:
        """The earliest time a ``DeadlineTick`` has work to do (a deadline or
        the end of a backoff), for the driver to schedule one."""
        times = [x for x in (self._deadlines.next_at(), self._waits.next_at()) if x is not None]
        return min(times) if times else None

    def task_agent(self, key: TaskKey) -> str | None:
        """Agent holding ``key``, if any."""
        t = self._task(key)
        return t.agent.info.id if t and t.agent else None

    def agent_ids(self) -> list[str]:
        """Known agents in join order."""
        return list(self._agents)

    def running(self, agent_id: str) -> list[TaskKey]:
        """Tasks holding a slot of ``agent_id``."""
        a = self._agents.get(agent_id)
        return list(a.running) if a else []

    def queued(self, agent_id: str) -> list[TaskKey]:
        """Tasks in ``agent_id``'s prefetch queue, in start order."""
        a = self._agents.get(agent_id)
        return [t.key for t in a.queue] if a else []

    def loads(self) -> dict[str, float]:
        """Predicted seconds held per agent (running + queued)."""
        return {aid: a.load for aid, a in self._agents.items()}

    def project_ids(self) -> list[str]:
        """Known projects in submission order."""
        return list(self._projects)

    def project_outcome(self, project_id: str) -> str | None:
        """``succeeded``/``failed``/``cancelled`` once finished, else ``None``."""
        p = self._projects.get(project_id)
        return p.finished if p else None

    def plan(self, project_id: str) -> Plan | None:
        """The plan the project currently follows, if any."""
        p = self._projects.get(project_id)
        return p.plan if p else None

    def analysis(self, project_id: str) -> GraphAnalysis | None:
        """Cached DAG analysis (ranks) of a project."""
        p = self._projects.get(project_id)
        return p.analysis if p else None

    def unfinished(self) -> int:
        """Non-terminal tasks over all projects."""
        return sum(p.remaining for p in self._projects.values())

    def metrics(self, now: float) -> SchedulerMetrics:
        """Seed metrics at ``now``."""
        s = self._stats
        slots = sum(a.info.slots for a in self._agents.values())
        elapsed = now - (s.first_event if s.first_event is not None else now)
        util = s.busy / (elapsed * slots) if elapsed > 0 and slots else 0.0
        cp_total = sum(
            p.analysis.critical_path_length for p in self._projects.values() if p.analysis
        )
        cp_done = sum(p.cp_done for p in self._projects.values())
        return SchedulerMetrics(
            total_steals=s.steals,
            steal_events=s.steal_events,
            average_steal_size=s.steals / s.steal_events if s.steal_events else 0.0,
            rejected_steals=s.rejected_steals,
            last_steal_time=s.last_steal,
            redistribution_latency=s.latency_sum / s.latency_n if s.latency_n else 0.0,
            load_imbalance=load_imbalance(a.load for a in self._agents.values()),
            lock_contention_rate=lock_contention_rate(s.failed_claims, s.assignments),
            utilization=min(1.0, util),
            parallelization_efficiency=min(1.0, util),
            critical_path_progress=cp_done / cp_total if cp_total > 0 else 1.0,
            assignments=s.assignments,
            failed_claims=s.failed_claims,
            replans_requested=s.replans,
        )

    # ------------------------------------------------------------ events

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
                    self._set_plan(p, ev.plan)
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
        for tk in [k for k in self._last_failure if k.project == project_id]:
            del self._last_failure[tk]
        self._planned.pop(project_id, None)
        for key in [k for k in self._branch_owner if k[0] == project_id]:
            del self._branch_owner[key]

    def _on_submitted(self, spec: ProjectSpec, plan: Plan | None) -> None:
        if spec.id in self._projects:
            return  # idempotent: a project is submitted once
        p = self._new_project(spec)
        for t in p.tasks:
            if t.waiting == 0:
                t.state = _R
                self._seq += 1
                t.ready_seq = self._seq
        self._set_plan(p, plan)
        if not p.plan:
            for t in p.tasks:
                if t.state is _R:
                    self._push_ready(t)
        self._check_finished(p)

    def _new_project(self, spec: ProjectSpec) -> _Project:
        p = _Project(spec)
        self._projects[spec.id] = p
        for i, ts in enumerate(spec.tasks):
            t = _Task(TaskKey(spec.id, ts.id), ts, i, p)
            p.tasks.append(t)
            p.by_id[ts.id] = t
        self._rerank(p)
        return p

    def _rerank(self, p: _Project) -> None:
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
        specs = list(p.spec.tasks)
        for x, ns in blocked.items():
            t = p.by_id[x]
            t.spec = specs[t.index] = replace(t.spec, depends_on=(*t.spec.depends_on, *ns))
            t.waiting += len(ns)
            if t.state is _R:
                t.state, t.heap_id, t.planned = _P, -1, False
        p.spec = replace(p.spec, tasks=(*specs, *add.tasks))
        p.analysis, changed = extend_analysis(
            p.analysis, add.tasks, blocked, self.durations.predict
        )
        fresh = []
        for ts in add.tasks:
            t = _Task(TaskKey(p.spec.id, ts.id), ts, len(p.tasks), p)
            t.rank, t.predicted = p.analysis.rank[t.index], p.analysis.weight[t.index]
            p.tasks.append(t)
            p.by_id[ts.id] = t
            fresh.append(t)
        for t in fresh:
            t.waiting = sum(1 for d in t.spec.depends_on if p.by_id[d].state is not _OK)
        p.remaining += len(fresh)
        p.unestimated = p.unestimated or any(t.estimate is None for t in add.tasks)
        p.finished = None
        self._drop_plan(p, f"{len(fresh)} tasks added")
        for i in changed:
            t = p.tasks[i]
            t.rank = p.analysis.rank[i]
            if t.state is _R and not t.planned:
                self._push_ready(t)  # re-keyed; the old heap entry is stale
        for t in fresh:
            if t.waiting == 0:
                self._make_ready(t)

    def _on_claim_request(self, ev: ClaimWanted | ClaimWithdrawn) -> None:
        """Pull mode (docs/scheduling.md, "Pull claims"): an open request is a
        free slot; one whose wait ended unanswered is answered empty."""
        a = self._agents.get(ev.agent_id)
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
        self._touch(a)

    def _on_joined(self, info: AgentInfo) -> None:
        a = self._agents.get(info.id)
        if a is not None:
            a.asks.clear()  # a new session asks again
            if a.info.capabilities != info.capabilities:
                a.group = self._group(info.capabilities)
            a.info = info
        else:
            self._seq += 1
            a = _Agent(info, self._seq, self._group(info.capabilities))
            self._agents[info.id] = a
            # A plan is a schedule for the agents it was made for: more capacity
            # makes it wrong (its tasks would never reach the newcomer).
            for p in list(self._planned.values()):
                self._drop_plan(p, f"agent {info.id} joined")
        self._touch(a)

    def _on_left(self, agent_id: str, now: float) -> None:
        a = self._agents.pop(agent_id, None)
        if a is None:
            return
        a.alive = False
        self._dirty.pop(agent_id, None)
        self._queued.pop(agent_id, None)
        for t in [*a.running.values(), *a.queue]:
            self._lose(t, f"agent {agent_id} left")
        for p in list(self._planned.values()):
            if p.plan and agent_id in p.plan.sequences:
                self._drop_plan(p, f"agent {agent_id} left")

    def _on_started(self, ev: TaskStarted) -> None:
        t = self._task(ev.key)
        if not t or not t.agent or t.agent.info.id != ev.agent_id:
            return
        if t.state is _A:
            a = t.agent
            a.queue.remove(t)
            if not a.queue:
                self._queued.pop(a.info.id, None)
            self._run(t, a, ev.now)
            self._touch(a)
        if t.started_at is None:
            t.started_at = ev.now
            self._deadlines.arm(t.key, t.attempt, ev.now, t.spec.timeout)

    def _on_succeeded(self, ev: TaskSucceeded) -> None:
        t = self._task(ev.key)
        if not t or t.state.terminal:
            return
        p = t.project
        self._release(t)
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
                self._drop_plan(p, f"task {t.spec.id} took {ev.duration:g}s, planned {want:g}s")
        p.since_rank += 1
        if (
            drift
            and (p.unestimated or p.calibration != self.durations.calibration)
            and p.rank_version != self.durations.version
            and p.since_rank >= max(16, len(p.tasks) // 50)
        ):
            self._rerank(p)
            self._rebuild_ready()
        for c in p.analysis.children[t.index] if p.analysis else ():
            ct = p.tasks[c]
            ct.waiting -= 1
            if ct.waiting == 0 and ct.state is _P:
                self._make_ready(ct)
        p.remaining -= 1
        self._check_finished(p)

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
        t.state = _A
        t.started_at = None
        a.queue.insert(0, t)
        self._queued[a.info.id] = a
        self._touch(a)

    def _on_steal_rejected(self, ev: StealRejected) -> None:
        t = self._task(ev.key)
        self._stats.rejected_steals += 1
        if not t or not t.agent or t.agent.info.id != ev.to_agent or t.state not in (_A, _RUN):
            return
        victim = self._agents.get(ev.from_agent)
        self._release(t)
        if victim is None:
            self._lose(t, "steal rejected and victim gone")
            return
        t.state = _A
        t.agent = victim
        victim.queue.insert(0, t)
        victim.load += t.predicted
        self._queued[victim.info.id] = victim
        self._touch(victim)

    def _on_cancelled(self, project_id: str, reason: str) -> None:
        p = self._projects.get(project_id)
        if not p or p.finished:
            return
        self._planned.pop(project_id, None)
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
            a = self._agents.get(c.agent)
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
                self._deadlines.arm(t.key, t.attempt, ev.now, t.spec.timeout)
            else:
                t.state = _A
                a.queue.append(t)
                self._queued[a.info.id] = a
            self._touch(a)
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
            self._set_plan(p, ev.plans.get(spec.id))
            if not p.plan:
                for t in p.tasks:
                    if t.state is _R:
                        self._push_ready(t)
            self._check_finished(p)

    # ------------------------------------------------------------ transitions

    def _task(self, key: TaskKey) -> _Task | None:
        p = self._projects.get(key.project)
        return p.by_id.get(key.task) if p else None

    def _make_ready(self, t: _Task, push: bool = True) -> None:
        t.state = _R
        t.agent = None
        self._seq += 1
        t.ready_seq = self._seq
        if push and not t.planned:
            self._push_ready(t)

    def _push_ready(self, t: _Task) -> None:
        self._push += 1
        t.heap_id = self._push
        k = self._key(t)
        heap = self._ready.get(t.spec.requires)
        if heap is None:
            heap = self._ready[t.spec.requires] = []
        heapq.heappush(heap, (k, self._push, t))
        if uses_scarcity(self.config.policy):
            heapq.heappush(self._by_rank.setdefault(t.spec.requires, []), (-t.rank, self._push, t))

    def _push_queued(self, t: _Task) -> None:
        if (
            self.config.policy in _RANKED_POLICIES
            and self.config.stealing_enabled
            and self.config.steal_on_idle
            and t.spec.priority < self.config.priority_threshold
        ):
            self._push += 1
            t.qheap_id = self._push
            heapq.heappush(self._qheap, (self._key(t), self._push, t))

    def _top_queued(self) -> tuple[tuple[float, ...], int, _Task] | None:
        """Most urgent task queued on an agent whose slots are all busy."""
        h = self._qheap
        while h:
            t = h[0][2]
            if (
                t.qheap_id == h[0][1]
                and t.state is _A
                and t.agent is not None
                and t.agent.free_slots <= 0
                and not t.project.plan
            ):
                return h[0]
            heapq.heappop(h)
        return None

    def _rebuild_ready(self) -> None:
        tasks = [e[2] for h in self._ready.values() for e in h if e[2].heap_id == e[1]]
        self._ready = {}
        self._by_rank = {}
        for t in tasks:
            if t.state is _R and not t.planned:
                self._push_ready(t)

    def _release(self, t: _Task) -> None:
        """Detach ``t`` from its agent (if any)."""
        a = t.agent
        if a is None:
            return
        a.answered.pop(t.key, None)
        if t.state is _RUN:
            a.running.pop(t.key, None)
        elif t.state is _A:
            a.queue.remove(t)
            if not a.queue:
                self._queued.pop(a.info.id, None)
        a.load -= t.predicted
        t.agent = None
        if a.alive:
            self._touch(a)

    def _lose(self, t: _Task, reason: str) -> None:
        """The claim on ``t`` is gone: requeue (attempt + 1) or fail."""
        started = t.state is _RUN
        if t.agent is not None:
            self._release(t)
        if t.project.plan:
            self._drop_plan(t.project, reason)
        if started and t.attempt >= t.spec.max_attempts:
            self._fail(t, f"{reason}; attempts exhausted ({t.attempt})")
        else:
            self._requeue(t, reason, spent=started)

    def _requeue(self, t: _Task, reason: str, spent: bool = True) -> None:
        """READY again; the next run is a new attempt only if this one started
        (only a start counts as an attempt). A spent attempt waits out its
        ``retry_backoff`` first (held PENDING until ``_expire`` frees it)."""
        delay = backoff_delay(t.spec.retry_backoff, t.key, t.attempt) if spent else 0.0
        if spent:
            self._last_failure[t.key] = reason
            t.attempt += 1
        t.started_at = None
        if delay > 0:
            t.state = _P
            t.agent = None
            self._waits.hold(t.key, self._event_now + delay, t.attempt)
        else:
            self._make_ready(t)
        self._out.append(RequeueTask(t.key, t.attempt, reason))

    def _expire(self, now: float) -> None:
        """Revoke running tasks past their deadline (a spent, failed attempt)
        and make ready the retries whose backoff is over (deadlines.py)."""
        for key, attempt, started_at in self._deadlines.due(now):
            t = self._task(key)
            if t is None or t.state is not _RUN or t.agent is None:
                continue
            if t.attempt != attempt or t.started_at != started_at:
                continue  # that run ended; this one has its own deadline
            self._out.append(RevokeTask(key, t.agent.info.id, attempt, DEADLINE_EXCEEDED))
            self._release(t)
            if t.attempt < t.spec.max_attempts:
                self._requeue(t, DEADLINE_EXCEEDED)
            else:
                self._fail(t, DEADLINE_EXCEEDED)
        for key, attempt in self._waits.due(now):
            w = self._task(key)
            if w is not None and w.state is _P and w.attempt == attempt:
                self._make_ready(w)

    def _fail(self, t: _Task, reason: str) -> None:
        p = t.project
        self._last_failure[t.key] = reason
        t.state = _FAIL
        p.remaining -= 1
        self._out.append(MarkTaskFailed(t.key, t.attempt, reason))
        if p.analysis is None:
            return
        todo = list(p.analysis.children[t.index])
        while todo:
            c = p.tasks[todo.pop()]
            if c.state.terminal:
                continue
            self._cancel(c, f"dependency {t.spec.id} failed")
            todo.extend(p.analysis.children[c.index])
        self._check_finished(p)

    def _cancel(self, t: _Task, reason: str) -> None:
        holder = t.agent.info.id if t.agent else None
        self._release(t)
        t.state = _CXL
        t.project.remaining -= 1
        self._out.append(CancelTask(t.key, reason, holder))

    def _check_finished(self, p: _Project) -> None:
        if p.remaining > 0 or p.finished:
            return
        states = {t.state for t in p.tasks}
        p.finished = "failed" if _FAIL in states else "cancelled" if _CXL in states else "succeeded"
        self._planned.pop(p.spec.id, None)
        self._out.append(ProjectFinished(p.spec.id, p.finished))

    def _run(self, t: _Task, a: _Agent, now: float) -> None:
        t.state = _RUN
        a.running[t.key] = t
        t.started_at = now
        self._deadlines.arm(t.key, t.attempt, now, t.spec.timeout)
        self._note_running(t)
        if t.stolen_at is not None:
            self._stats.latency_sum += now - t.stolen_at
            self._stats.latency_n += 1
            t.stolen_at = None

    def _assign(self, t: _Task, a: _Agent, now: float) -> None:
        start = a.free_slots > 0
        if a.info.pull and a.asks:
            a.answered[t.key] = a.asks.popleft()
        t.agent = a
        t.attempt = max(1, t.attempt)
        a.load += t.predicted
        if start:
            self._run(t, a, now)
        else:
            t.state = _A
            a.queue.append(t)
            self._queued[a.info.id] = a
            self._push_queued(t)
        if t.spec.branch:
            self._branch_owner[(t.key.project, t.spec.branch)] = a
        self._stats.assignments += 1
        self._touch(a)
        self._out.append(AssignTask(t.key, a.info.id, t.attempt, start))

    # ------------------------------------------------------------ agents

    def _group(self, caps: frozenset[str]) -> _Group:
        g = self._groups.get(caps)
        if g is None:
            g = self._groups[caps] = _Group(caps)
            self._eligible.clear()
        return g

    def _touch(self, a: _Agent) -> None:
        """Re-index ``a`` in its group's heaps after any change."""
        self._dirty[a.info.id] = a
        k = agent_key(self.config.policy, a.load, a.seq)
        if a.free_slots > 0:
            self._push += 1
            a.slot_stamp = self._push
            heapq.heappush(a.group.heaps[_SLOT], (k, self._push, a))
        else:
            a.slot_stamp = -1
        if a.queue_room > 0:
            self._push += 1
            a.queue_stamp = self._push
            heapq.heappush(a.group.heaps[_QUEUE], (k, self._push, a))
        else:
            a.queue_stamp = -1

    # ------------------------------------------------------------ dispatch

    def _dispatch(self, now: float) -> None:
        self._needs = self._build_needs(now)
        self._now = now
        self._slot_total = -1
        self._start_queued(now)
        if self._planned:
            self._dispatch_planned(now)
        for tier in (_SLOT, _QUEUE):
            while True:
                best: tuple[tuple[float, ...], int, _Task] | None = None
                for req, heap in self._ready.items():
                    while heap and (heap[0][2].heap_id != heap[0][1] or heap[0][2].state is not _R):
                        heapq.heappop(heap)
                    top = self._tail_task(req) if heap and self._by_rank else None
                    top = top or (heap[0] if heap else None)
                    if top is None or (best is not None and top[:2] >= best[:2]):
                        continue
                    if self._pick_agent(top[2], tier) is not None:
                        best = top
                if tier == _SLOT and self._qheap:
                    q = self._top_queued()
                    if (
                        q is not None
                        and (best is None or (self._urgency(q[2]), q[1]) < best[:2])
                        and self._steal_to_slot(q[2], now)
                    ):
                        continue
                if best is None:
                    break
                t = best[2]
                t.heap_id = -1  # its heap entries are now stale (lazy deletion)
                a = self._pick_agent(t, tier)
                assert a is not None
                self._assign(t, a, now)
        if self.config.stealing_enabled and self.config.steal_on_idle and self._queued:
            idle = [
                a.info.id
                for a in self._dirty.values()
                if a.alive and a.free_slots > 0 and not a.queue
            ]
            if idle:
                self._steal(now, idle)
        self._dirty.clear()

    def _key(self, t: _Task) -> tuple[float, ...]:
        return task_key(self.config.policy, t.eff, t.rank, t.index, t.ready_seq)

    def _steal_to_slot(self, t: _Task, now: float) -> bool:
        """A free slot takes ``t`` from a saturated agent's queue (steal on idle)."""
        thief = self._pick_agent(t, _SLOT)
        victim = t.agent
        if thief is None or victim is None or not self._worth_moving(t, now):
            # nobody free can run it now, or its own agent starts it soon:
            # re-pushed at the end of this step
            heapq.heappop(self._qheap)
            t.qheap_id = -1
            self._push_queued_later.append(t)
            return True
        self._move(t, victim, thief, now)
        return True

    def _worth_moving(self, t: _Task, now: float) -> bool:
        """Whether queued ``t`` would wait on its own agent longer than a move
        costs: until the agent's first slot frees, plus the work queued ahead."""
        a = t.agent
        if a is None or a.free_slots > 0:
            return False
        wait = self._frees_in(a, now)
        for q in a.queue:
            if q is t:
                break
            wait += q.predicted
        return wait > self.config.move_min_wait

    def _start_queued(self, now: float) -> None:
        ranked = self.config.policy in ("default", "critical-path")
        for a in list(self._dirty.values()):
            while a.alive and a.queue and a.free_slots > 0:
                if ranked and not a.queue[0].project.plan:
                    # a freed slot takes a more urgent ready task before its prefetch
                    r = self._best_ready_for(a)
                    q = self._top_queued() if self._qheap else None
                    own = self._urgency(a.queue[0])
                    if (
                        q is not None
                        and q[2].agent is not a
                        and self._urgency(q[2]) < own
                        and (r is None or self._urgency(q[2]) < self._urgency(r))
                        and q[2].spec.requires <= a.info.capabilities
                        and self._worth_moving(q[2], now)
                    ):
                        victim = q[2].agent
                        assert victim is not None
                        self._move(q[2], victim, a, now)
                        continue
                    if r is not None and self._urgency(r) < own:
                        r.heap_id = -1  # lazy deletion from its heaps
                        self._assign(r, a, now)
                        continue
                t = a.queue.pop(0)
                self._run(t, a, now)
                self._out.append(StartTask(t.key, a.info.id, t.attempt))
            if not a.queue:
                self._queued.pop(a.info.id, None)
            if a.alive:
                self._touch(a)

    def _dispatch_planned(self, now: float) -> None:
        for p in list(self._planned.values()):
            for aid, seq in p.plan_seqs.items():
                a = self._agents.get(aid)
                if a is None:
                    continue
                while seq and (a.free_slots > 0 or a.queue_room > 0):
                    t = seq[0]
                    if t.state is _P:
                        break
                    seq.popleft()
                    if t.state is _R:
                        t.planned = False
                        self._assign(t, a, now)
            if p.plan and not any(t.state in (_A, _RUN) for t in p.tasks) and p.remaining:
                self._drop_plan(p, "plan stalled")

    def _set_plan(self, p: _Project, plan: Plan | None) -> None:
        if plan is None or not follows_plan(self.config.policy):
            if p.plan:
                self._drop_plan(p, "plan cleared", request=False)
            return
        if any(aid not in self._agents for aid in plan.sequences):
            return
        p.plan = plan
        self._planned[p.spec.id] = p
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

    def _drop_plan(self, p: _Project, reason: str, request: bool = True) -> None:
        if p.plan is None:
            return
        p.plan = None
        p.plan_seqs = {}
        self._planned.pop(p.spec.id, None)
        for t in p.tasks:
            if t.planned:
                t.planned = False
                if t.state is _R:
                    self._push_ready(t)
        if request:
            self._stats.replans += 1
            self._out.append(RequestReplan(p.spec.id, reason))

    # ------------------------------------------------------------ stealing

    def _view(self, a: _Agent, now: float) -> AgentQueue:
        running = 0.0
        for t in a.running.values():
            el = now - t.started_at if t.started_at is not None else 0.0
            running += max(0.0, t.predicted - el)
        return AgentQueue(
            agent_id=a.info.id,
            capabilities=a.info.capabilities,
            tasks=tuple(
                QueuedTask(
                    key=t.key,
                    priority=t.spec.priority,
                    predicted=t.predicted,
                    requires=t.spec.requires,
                    started=t.project.plan is not None,  # planned tasks are pinned
                    last_moved=t.last_moved,
                )
                for t in a.queue
            ),
            room=max(0, a.free_slots) + max(0, a.queue_room),
            running_load=running,
            free_slots=max(0, a.free_slots),
            frees_in=self._frees_in(a, now),
        )

    def _steal(self, now: float, thieves: Iterable[str] | None) -> None:
        cfg = self.config
        if not cfg.stealing_enabled or not self._queued:
            return
        if thieves is None:
            agents: list[_Agent] = list(self._agents.values())
            allowed: set[str] | None = None
        else:
            allowed = set(thieves)
            victims = [
                a
                for a in self._queued.values()
                if cfg.predictive_stealing
                or len(a.queue) >= cfg.steal_threshold
                or (a.free_slots <= 0 and self._worth_moving(a.queue[-1], now))
            ]
            if not victims:
                return
            agents = victims + [self._agents[i] for i in allowed if i not in self._queued]
        moves = plan_steals([self._view(a, now) for a in agents], cfg, now, allowed)
        pairs: set[tuple[str, str]] = set()
        for m in moves:
            t = self._task(m.key)
            thief = self._agents.get(m.to_agent)
            if t is None or thief is None or t.state is not _A:
                continue
            victim = t.agent
            if victim is None or victim.info.id != m.from_agent:
                continue
            self._move(t, victim, thief, now, count_event=False)
            pairs.add((m.from_agent, m.to_agent))
        if pairs:
            self._stats.steal_events += len(pairs)

    def _move(
        self, t: _Task, victim: _Agent, thief: _Agent, now: float, count_event: bool = True
    ) -> None:
        self._release(t)
        t.agent = thief
        t.last_moved = now
        t.stolen_at = now
        thief.load += t.predicted
        start = thief.free_slots > 0
        if start:
            self._run(t, thief, now)
        else:
            t.state = _A
            thief.queue.append(t)
            self._queued[thief.info.id] = thief
            self._push_queued(t)
        self._touch(thief)
        self._stats.steals += 1
        self._stats.last_steal = now
        if count_event:
            self._stats.steal_events += 1
        self._out.append(StealTask(t.key, victim.info.id, thief.info.id, t.attempt, start))
