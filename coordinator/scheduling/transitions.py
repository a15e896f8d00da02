"""``TaskTransitions``: the task lifecycle moves of ``SchedulerState``.

PENDING -> READY (``_make_ready``) -> ASSIGNED or RUNNING (``_assign``,
``_run``) -> SUCCEEDED | FAILED (``_fail``, which cancels every descendant)
| CANCELLED (``_cancel``); a lost claim (``_lose``) detaches the task
(``_release``) and makes it READY again (``_requeue``: ``attempt + 1`` only
if it had started) or fails it once ``max_attempts`` starts are used.

Invariants: a task is attached to an agent exactly while ASSIGNED or RUNNING,
and the agent's ``load`` counts its ``predicted`` seconds meanwhile; every
transition that changes an agent re-indexes it (``AgentPool.touch``); each
transition the leader must persist appends exactly one command to the step's
output. A layer of ``SchedulerState`` (it owns every attribute declared here).
"""

from __future__ import annotations

from workhive.coordinator.model import TaskKey, TaskState
from workhive.coordinator.scheduling.agent_pool import remaining
from workhive.coordinator.scheduling.deadlines import RevokeTask, TaskTimers
from workhive.coordinator.scheduling.events import (
    AssignTask,
    CancelTask,
    Command,
    MarkTaskFailed,
    ProjectFinished,
    RequeueTask,
)
from workhive.coordinator.scheduling.placement import Placement
from workhive.coordinator.scheduling.plan_following import PlanFollowing
from workhive.coordinator.scheduling.records import (
    AgentRecord,
    Counter,
    DispatchStats,
    ProjectRecord,
    TaskRecord,
)
from workhive.coordinator.scheduling.retry_policy import backoff_delay

_P, _R, _A, _RUN = TaskState.PENDING, TaskState.READY, TaskState.ASSIGNED, TaskState.RUNNING
_FAIL, _CXL, _OK = TaskState.FAILED, TaskState.CANCELLED, TaskState.SUCCEEDED

__all__ = ["TaskTransitions"]


class TaskTransitions(Placement):
    """Lifecycle transitions (see the module docstring)."""

    _plans: PlanFollowing
    _stats: DispatchStats
    _out: list[Command]
    _seq: Counter
    _timers: TaskTimers  # deadlines, backoff waits, last failures (deadlines.py)
    _event_now: float  # ``now`` of the event being applied

    def _task(self, key: TaskKey) -> TaskRecord | None:
        p = self._projects.get(key.project)
        return p.by_id.get(key.task) if p else None

    def _make_ready(self, t: TaskRecord, push: bool = True) -> None:
        if t.waiting > 0:  # a chained task given back: it waits for its dependencies again
            t.state = _P
            t.agent = None
            t.started_at = None
            return
        t.state = _R
        t.agent = None
        t.ready_seq = self._seq.next()
        if push and not t.planned:
            self._queues.push_ready(t)

    def _release(self, t: TaskRecord, succeeded: bool = False) -> None:
        """Detach ``t`` from its agent (if any); a running ``t`` that did not
        succeed takes the tasks chained after it there along (``_unchain``)."""
        a = t.agent
        if a is None:
            return
        a.answered.pop(t.key, None)
        if t.state is _RUN:
            a.running.pop(t.key, None)
            if not succeeded:
                self._unchain(t, a)
        elif t.state is _A:
            a.queue.remove(t)
            if not a.queue:
                self._pool.queued.pop(a.info.id, None)
        a.load -= t.predicted
        t.agent = None
        if a.alive:
            self._pool.touch(a)

    def _lose(self, t: TaskRecord, reason: str) -> None:
        """The claim on ``t`` is gone: requeue (attempt + 1) or fail; a
        chained task (dependencies unfinished) waits for them again, no
        attempt spent (it cannot have started before they succeeded)."""
        started = t.state is _RUN
        if t.agent is not None:
            self._release(t)
        if t.waiting > 0:
            self._make_ready(t)
            return
        if t.project.plan:
            self._plans.drop_plan(t.project, reason)
        if started and t.attempt >= t.spec.max_attempts:
            self._fail(t, f"{reason}; attempts exhausted ({t.attempt})")
        else:
            self._requeue(t, reason, spent=started)

    def _requeue(self, t: TaskRecord, reason: str, spent: bool = True) -> None:
        """READY again; the next run is a new attempt only if this one started
        (only a start counts as an attempt). A spent attempt first waits out
        its ``retry_backoff``: held PENDING until ``SchedulerState._expire``
        frees it (retry_policy.py). A chained task handed back before its
        dependencies succeeded just waits for them again (its record never
        left ``pending``: nothing to write)."""
        if t.waiting > 0:
            self._make_ready(t)
            return
        delay = backoff_delay(t.spec.retry_backoff, t.key, t.attempt) if spent else 0.0
        if spent:
            self._timers.last_failure[t.key] = reason
            t.attempt += 1
        t.started_at = None
        if delay > 0:
            t.state = _P
            t.agent = None
            self._timers.waits.hold(t.key, self._event_now + delay, t.attempt)
        else:
            self._make_ready(t)
        self._out.append(RequeueTask(t.key, t.attempt, reason))

    def _fail(self, t: TaskRecord, reason: str) -> None:
        p = t.project
        self._timers.last_failure[t.key] = reason
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

    def _cancel(self, t: TaskRecord, reason: str) -> None:
        holder = t.agent.info.id if t.agent else None
        self._release(t)
        t.state = _CXL
        t.project.remaining -= 1
        self._out.append(CancelTask(t.key, reason, holder))

    def _check_finished(self, p: ProjectRecord) -> None:
        if p.remaining > 0 or p.finished:
            return
        states = {t.state for t in p.tasks}
        p.finished = "failed" if _FAIL in states else "cancelled" if _CXL in states else "succeeded"
        self._plans.planned.pop(p.id, None)
        self._out.append(ProjectFinished(p.id, p.finished))

    def _run(self, t: TaskRecord, a: AgentRecord, now: float) -> None:
        t.state = _RUN
        t.lag_sample = a.free_slots > 0
        a.running[t.key] = t
        if a.free_slots <= 0:
            self._queues.release(a.info.id)
        t.started_at = now
        self._timers.deadlines.arm(t.key, t.attempt, now, t.spec.timeout)
        self._note_running(t)
        if t.stolen_at is not None:
            self._stats.latency_sum += now - t.stolen_at
            self._stats.latency_n += 1
            t.stolen_at = None
        if self.config.chain_ahead:
            self._chain_after(t, a, now)

    def _chain_after(self, t: TaskRecord, a: AgentRecord, now: float) -> None:
        """Claim, started, the best child of ``t`` (running on ``a``) whose
        unfinished dependencies all run on ``a``: the agent runs it when they
        succeed there (``SchedulerConfig.chain_ahead``). One child per task,
        the highest ranked; short, no deadline, no plan, ``a`` able to run it;
        at most ``chain_ahead`` such tasks per agent. Recursive: the chained
        task's own child may follow it."""
        p, an = t.project, t.project.analysis
        if an is None or not a.info.chains or a.info.pull or p.plan is not None:
            return
        if t.spec.timeout is not None or not an.children[t.index]:
            return
        if sum(1 for r in a.running.values() if r.waiting) >= self.config.chain_ahead:
            a.chain_full = True  # a success here makes room: chaining resumes then
            return
        best: TaskRecord | None = None
        deps: list[TaskRecord] = []
        for c in an.children[t.index]:
            ct = p.tasks[c]
            if (
                ct.state is not _P
                or not ct.waiting
                or (best is not None and ct.rank <= best.rank)
                or not ct.spec.requires <= a.info.capabilities
                or not self._short(ct)
            ):
                continue
            ds = [p.tasks[i] for i in an.parents[c]]
            if all(d.state is _OK or (d.state is _RUN and d.agent is a) for d in ds):
                best, deps = ct, ds
        if best is None:
            return
        after = tuple(d.spec.id for d in deps if d.state is not _OK)
        best.agent = a
        best.attempt = max(1, best.attempt)
        a.load += best.predicted
        self._stats.assignments += 1
        self._out.append(AssignTask(best.key, a.info.id, best.attempt, True, after))
        self._run(best, a, now)
        best.lag_sample = False
        ends = (remaining(d.predicted, d.started_at, now) for d in deps if d.state is _RUN)
        best.started_at = now + max(ends, default=0.0)
        self._pool.touch(a)

    def _unchain(self, t: TaskRecord, a: AgentRecord) -> None:
        """``t`` left ``a`` without succeeding: its children chained after it
        on ``a`` wait for their dependencies again, their claims revoked
        (not on an agent that is gone: its claims go with its lease)."""
        an = t.project.analysis
        for c in an.children[t.index] if an else ():
            ct = t.project.tasks[c]
            if ct.state is _RUN and ct.agent is a and ct.waiting:
                self._give_back(ct, f"dependency {t.spec.id} did not succeed on this agent")

    def _give_back(self, t: TaskRecord, reason: str) -> None:
        """Chained ``t`` (not started: a dependency has not succeeded) waits
        for its dependencies again; its claim is revoked unless its agent is
        gone (the claim goes with the lease)."""
        a, attempt = t.agent, t.attempt
        self._release(t)
        self._make_ready(t)
        if a is not None and a.alive:
            self._out.append(RevokeTask(t.key, a.info.id, attempt, reason))

    def _chained_after(self, t: TaskRecord) -> set[str]:
        """Ids of the tasks chained after running ``t`` on its agent, directly
        or through one another: none of them can have started before ``t``
        succeeded."""
        out: set[str] = set()
        todo, an = [t], t.project.analysis
        while todo and an is not None:
            r = todo.pop()
            for c in an.children[r.index]:
                ct = r.project.tasks[c]
                chained = ct.state is _RUN and ct.agent is t.agent and ct.waiting
                if chained and ct.spec.id not in out:
                    out.add(ct.spec.id)
                    todo.append(ct)
        return out

    def _assign(self, t: TaskRecord, a: AgentRecord, now: float, ahead: bool = False) -> None:
        """Give ``t`` to ``a``: started on a free slot (or ahead, see
        ``SchedulerConfig.start_ahead``), else into its prefetch queue."""
        start = ahead or a.free_slots > 0
        if a.info.pull and a.asks:
            a.answered[t.key] = a.asks.popleft()
        t.agent = a
        t.attempt = max(1, t.attempt)
        a.load += t.predicted
        self._out.append(AssignTask(t.key, a.info.id, t.attempt, start))  # before any chained
        if start:
            self._run(t, a, now)
        else:
            t.state = _A
            a.queue.append(t)
            self._pool.queued[a.info.id] = a
            self._queues.push_queued(t)
        if t.spec.branch:
            self._pool.branch_owner[(t.key.project, t.spec.branch)] = a
        self._stats.assignments += 1
        self._pool.touch(a)
