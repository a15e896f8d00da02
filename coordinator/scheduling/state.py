"""``SchedulerState``: THE scheduler, a pure synchronous state machine.

One mutator, ``handle(*events) -> list[Command]`` (modelled on dask's
``worker_state_machine``). The leader's driver turns each command into one
fenced etcd transaction (or gRPC push) and reports failures back as events
(``AssignRejected``, ``StartRejected``, ``StealRejected``, ``ClaimLost``). The
state machine applies its own commands optimistically. The simulator drives the
very same object. No I/O, no clock, no randomness: the same events give the
same commands.

Structure (each part a module with its own contract): the records
(``records``); the agent pool and its heaps (``agent_pool.AgentPool``); the
ready and queued heaps (``ready_queues.ReadyQueues``); plan following
(``plan_following.PlanFollowing``); and the layers of this class, bottom up:
agent and task choice (``placement.Placement``), lifecycle transitions
(``transitions.TaskTransitions``), moving queued work
(``steal_application.StealApplication``), the per-step loop
(``dispatch.Dispatch``) and event application
(``event_handlers.EventHandlers``). This module keeps the entry point
(``handle``), the read-only queries and the metrics.

Task lifecycle here: PENDING (deps unfinished) -> READY (in a ready heap or
waiting for its planned agent) -> ASSIGNED (in an agent's prefetch queue) ->
RUNNING (holds one of the agent's slots) -> SUCCEEDED | FAILED | CANCELLED.
A lost claim sends the task back to READY, with ``attempt + 1`` if it had
started (only a start counts as an attempt); a task that had started and has
used ``max_attempts`` fails instead, which cancels every descendant. An
attempt running past its ``timeout`` is revoked and counts as failed; a
retried task with a ``retry_backoff`` waits PENDING until its backoff ends
(``deadlines``, ``retry_policy``; docs/scheduling.md, "Deadlines and backoff").
"""

from __future__ import annotations

from workhive.coordinator.model import TaskKey, TaskState
from workhive.coordinator.scheduling.agent_pool import AgentPool
from workhive.coordinator.scheduling.agent_speeds import AgentSpeeds
from workhive.coordinator.scheduling.config import SchedulerConfig
from workhive.coordinator.scheduling.deadlines import DEADLINE_EXCEEDED, RevokeTask, TaskTimers
from workhive.coordinator.scheduling.durations import DurationModel
from workhive.coordinator.scheduling.event_handlers import EventHandlers
from workhive.coordinator.scheduling.events import Command, Event
from workhive.coordinator.scheduling.graph import GraphAnalysis
from workhive.coordinator.scheduling.metrics import (
    SchedulerMetrics,
    load_imbalance,
    lock_contention_rate,
)
from workhive.coordinator.scheduling.plan_following import PlanFollowing
from workhive.coordinator.scheduling.planner_types import Plan
from workhive.coordinator.scheduling.ready_queues import ReadyQueues
from workhive.coordinator.scheduling.records import (
    Counter,
    DispatchStats,
    ProjectRecord,
    TaskRecord,
)
from workhive.coordinator.scheduling.scarcity import Needs

__all__ = ["SchedulerState"]

_P, _A, _RUN = TaskState.PENDING, TaskState.ASSIGNED, TaskState.RUNNING


class SchedulerState(EventHandlers):
    """The scheduler. Create once per leadership term (or restore with
    ``StateRestored``); feed events in order; execute the returned commands."""

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        self.config = config or SchedulerConfig()
        self.durations = DurationModel(
            alpha=self.config.ewma_alpha,
            default=self.config.default_duration,
            drift=self.config.duration_drift,
        )
        self.speeds = AgentSpeeds()
        self._reset()

    def _reset(self) -> None:
        """Forget everything but the configuration, the learned durations and agent speeds."""
        self._projects: dict[str, ProjectRecord] = {}
        self._seq = Counter()  # agent join order and task readiness order
        stamps = Counter()  # heap entry stamps (agent and task heaps)
        cfg = self.config
        self._pool = AgentPool(
            cfg.policy, stamps, cfg.start_ahead, cfg.start_ahead_tasks, cfg.agent_speeds
        )
        self._queues = ReadyQueues(self.config, stamps)
        self._stats = DispatchStats()
        self._plans = PlanFollowing(
            self.config, self._pool, self._queues, self._stats, self._assign, self._emit
        )
        self._out: list[Command] = []
        self._push_queued_later: list[TaskRecord] = []
        self._needs: Needs | None = None
        self._now = 0.0
        self._slot_total = -1
        self._feeders: dict[TaskKey, TaskRecord] = {}  # running tasks feeding needy work
        self._timers = TaskTimers()
        self._event_now = 0.0

    def _emit(self, c: Command) -> None:
        self._out.append(c)

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
                    self._queues.push_queued(t)
            self._push_queued_later.clear()
        self._out = []
        return out

    def _expire(self, now: float) -> None:
        """Revoke running tasks past their deadline (a spent, failed attempt:
        retried with backoff or failed for good) and make ready the retries
        whose backoff is over (deadlines.py, retry_policy.py)."""
        for key, attempt, started_at in self._timers.deadlines.due(now):
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
        for key, attempt in self._timers.waits.due(now):
            w = self._task(key)
            if w is not None and w.state is _P and w.attempt == attempt:
                self._make_ready(w)

    def task_state(self, key: TaskKey) -> TaskState | None:
        """State of ``key``; ``None`` for an unknown task."""
        t = self._task(key)
        return t.state if t else None

    def chained_after(self, key: TaskKey) -> frozenset[str]:
        """Ids of the tasks chained after running ``key`` on its agent
        (``SchedulerConfig.chain_ahead``): not started, whatever ``task_state``
        says, until ``key`` has succeeded there."""
        t = self._task(key)
        return frozenset(self._chained_after(t)) if t and t.state is _RUN else frozenset()

    def task_attempt(self, key: TaskKey) -> int:
        """Current attempt of ``key`` (0: never assigned)."""
        t = self._task(key)
        return t.attempt if t else 0

    def task_agent(self, key: TaskKey) -> str | None:
        """Agent holding ``key``, if any."""
        t = self._task(key)
        return t.agent.info.id if t and t.agent else None

    def deadline_at(self, key: TaskKey) -> float | None:
        """When the running ``key`` is revoked (``None``: not running or no timeout)."""
        t = self._task(key)
        if t is None or t.state is not _RUN or t.started_at is None or t.spec.timeout is None:
            return None
        return t.started_at + t.spec.timeout

    def retry_at(self, key: TaskKey) -> float | None:
        """When ``key``, waiting out its backoff, becomes ready again."""
        t = self._task(key)
        return self._timers.waits.ready_at(key) if t is not None and t.state is _P else None

    def last_failure(self, key: TaskKey) -> str:
        """Reason of ``key``'s last failed attempt ("" none, or none since
        this leader's restore)."""
        return self._timers.last_failure.get(key, "")

    def next_wakeup(self) -> float | None:
        """The earliest time a ``DeadlineTick`` has work to do (a deadline or
        the end of a backoff), for the driver to schedule one."""
        return self._timers.next_wakeup()

    def agent_ids(self) -> list[str]:
        """Known agents in join order."""
        return list(self._pool.agents)

    def running(self, agent_id: str) -> list[TaskKey]:
        """Tasks holding a slot of ``agent_id``."""
        a = self._pool.agents.get(agent_id)
        return list(a.running) if a else []

    def queued(self, agent_id: str) -> list[TaskKey]:
        """Tasks in ``agent_id``'s prefetch queue, in start order."""
        a = self._pool.agents.get(agent_id)
        return [t.key for t in a.queue] if a else []

    def loads(self) -> dict[str, float]:
        """Predicted seconds held per agent (running + queued)."""
        return {aid: a.load for aid, a in self._pool.agents.items()}

    def speed_factors(self) -> dict[str, float]:
        """How many times longer than typical each agent takes (``agent_speeds``)."""
        return {aid: self.speeds.factor(aid) for aid in self._pool.agents}

    def project_ids(self) -> list[str]:
        """Known projects in submission order."""
        return list(self._projects)

    def knows(self, project_id: str) -> bool:
        """Whether the project was submitted to this state (finished or not)."""
        return project_id in self._projects

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
        slots = sum(a.info.slots for a in self._pool.agents.values())
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
            load_imbalance=load_imbalance(a.load for a in self._pool.agents.values()),
            lock_contention_rate=lock_contention_rate(s.failed_claims, s.assignments),
            utilization=min(1.0, util),
            parallelization_efficiency=min(1.0, util),
            critical_path_progress=cp_done / cp_total if cp_total > 0 else 1.0,
            assignments=s.assignments,
            failed_claims=s.failed_claims,
            replans_requested=s.replans,
        )
