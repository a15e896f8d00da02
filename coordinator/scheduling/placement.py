"""Where a ready task goes: agent choice, scarce capabilities, the tail rule.

``Placement`` is the part of ``SchedulerState`` (a mixin; the state machine
owns every attribute it reads) that answers three questions during one
dispatch step, without mutating anything:

- which agent a task goes to (``_pick_agent``): capabilities filter; the
  ``default`` policy then orders agents by scarcity (``scarcity.Needs``: an
  agent whose extra capabilities needy work can use comes last) and the
  policy's own key, never takes a place reserved for needy work, and, once
  completions show the estimates are off (learned spread above
  ``prefetch_spread``), puts a task in a prefetch queue only on an agent
  predicted to start it within ``prefetch_horizon`` (``_soon_free_agent``);
- which ready task goes first (``_tail_task``, ``_urgency``): effective
  priority, then upward rank, except that a task holding the project's
  predicted end goes before any task with slack (``priorities.holds_the_end``,
  margin widened by the learned spread of the estimates, ``estimates.margin``);
- how long a running task still has (``agent_pool.remaining``, ``agent_pool.frees_in``).

It reads the agent pool (``agent_pool.AgentPool``) and the ready heaps
(``ready_queues.ReadyQueues``) of the state it is mixed into.

Contract: pure reads of the state at ``self._now``; same state, same answers
(the only writes drop stale heap entries).
See docs/scheduling.md ("Placement under wrong estimates").
"""

from __future__ import annotations

import heapq

from workhive.coordinator.model import TaskKey, TaskState
from workhive.coordinator.scheduling.agent_pool import (
    AHEAD,
    QUEUE,
    SLOT,
    AgentPool,
    frees_in,
    remaining,
)
from workhive.coordinator.scheduling.agent_speeds import AgentSpeeds
from workhive.coordinator.scheduling.config import SchedulerConfig
from workhive.coordinator.scheduling.durations import DurationModel
from workhive.coordinator.scheduling.estimates import margin
from workhive.coordinator.scheduling.policies import agent_key, uses_affinity, uses_scarcity
from workhive.coordinator.scheduling.priorities import holds_the_end
from workhive.coordinator.scheduling.ready_queues import ReadyQueues
from workhive.coordinator.scheduling.records import (
    AgentGroup,
    AgentRecord,
    ProjectRecord,
    TaskRecord,
)
from workhive.coordinator.scheduling.scarcity import Needs

__all__ = ["QUEUE", "SLOT", "Placement", "remaining"]

_SLOT, _QUEUE, _AHEAD = SLOT, QUEUE, AHEAD
_P, _R, _RUN, _OK = TaskState.PENDING, TaskState.READY, TaskState.RUNNING, TaskState.SUCCEEDED


class Placement:
    """Agent and task choice of ``SchedulerState`` (see the module docstring)."""

    config: SchedulerConfig
    durations: DurationModel
    speeds: AgentSpeeds
    _pool: AgentPool
    _queues: ReadyQueues
    _projects: dict[str, ProjectRecord]
    _needs: Needs | None
    _now: float
    _slot_total: int
    _feeders: dict[TaskKey, TaskRecord]

    def _tail_task(self, req: frozenset[str]) -> tuple[tuple[float, ...], int, TaskRecord] | None:
        """The highest-ranked ready task needing ``req`` if it holds the end."""
        h = self._queues.by_rank.get(req)
        while h and (h[0][2].heap_id != h[0][1] or h[0][2].state is not _R):
            heapq.heappop(h)
        if not h:
            return None
        t = h[0][2]
        if not holds_the_end(t.rank, t.project.left, self._slots(), self._margin()):
            return None
        return ((-1e18, -t.rank, t.index), h[0][1], t)

    def _pick_agent(self, t: TaskRecord, tier: int) -> AgentRecord | None:
        if tier == _AHEAD:
            return self._ahead_agent(t)
        req = t.spec.requires
        nd = self._needs
        if t.spec.branch and uses_affinity(self.config.policy):
            o = self._pool.branch_owner.get((t.key.project, t.spec.branch))
            if (
                o is not None
                and o.alive
                and req <= o.info.capabilities
                and (o.free_slots > 0 if tier == _SLOT else o.queue_room > 0)
                and not (nd and self._reserved(t, o.group, tier, nd))
            ):
                return o
        if (
            tier == _QUEUE
            and uses_scarcity(self.config.policy)
            and self.durations.errors.spread() > self.config.prefetch_spread
        ):
            return self._soon_free_agent(t)
        best: tuple[tuple[float, ...], int, AgentRecord] | None = None
        for g in self._pool.eligible_groups(req):
            e = self._pool.top_agent(g, tier)
            if e is None:
                continue
            if nd is not None:
                if self._reserved(t, g, tier, nd):
                    continue
                e = ((*nd.agent_cost(req, g.caps, _waiting), *e[0]), e[1], e[2])
            if best is None or e[:2] < best[:2]:
                best = e
        return best[2] if best else None

    def _short(self, t: TaskRecord) -> bool:
        """Whether ``t`` may be started ahead (``SchedulerConfig.start_ahead``):
        predicted short, no deadline, not pinned by a plan."""
        return (
            t.predicted <= self.config.start_ahead
            and t.spec.timeout is None
            and t.project.plan is None
        )

    def _ahead_agent(self, t: TaskRecord) -> AgentRecord | None:
        """The best agent that may start short ``t`` ahead: busy only with
        short work, none of it overrunning (balance and join order decide)."""
        best: tuple[tuple[float, ...], int, AgentRecord] | None = None
        for g in self._pool.eligible_groups(t.spec.requires):
            e = self._pool.top_agent(g, _AHEAD)
            if e is None or self._pool.overrunning(e[2], self._now):
                continue
            if best is None or e[:2] < best[:2]:
                best = e
        return best[2] if best else None

    def _soon_free_agent(self, t: TaskRecord) -> AgentRecord | None:
        """Prefetch place for ``t`` only on an agent whose slot is predicted to
        free within ``prefetch_horizon`` (a queue is for hiding a round trip,
        not for parking work behind a long task)."""
        best: tuple[tuple[float, ...], AgentRecord] | None = None
        nd = self._needs
        for g in self._pool.eligible_groups(t.spec.requires):
            if nd is not None and self._reserved(t, g, _QUEUE, nd):
                continue
            cost = nd.agent_cost(t.spec.requires, g.caps, _waiting) if nd else ()
            for a in self._pool.agents.values():
                if a.group is not g or a.queue_room <= 0:
                    continue
                wait = frees_in(a, self._now) + sum(q.predicted for q in a.queue)
                if wait > self.config.prefetch_horizon:
                    continue
                k = (*cost, *agent_key(self.config.policy, a.load, a.seq))
                if best is None or k < best[0]:
                    best = (k, a)
        return best[1] if best else None

    def _reserved(self, t: TaskRecord, g: AgentGroup, tier: int, nd: Needs) -> bool:
        """Whether group ``g``'s places must be left to needy work (``scarcity.Needs.blocks``)."""
        if g.caps <= t.spec.requires or not nd.entries:
            return False
        ags = [a for a in self._pool.agents.values() if a.group is g]
        free = sum(a.free_slots if tier == _SLOT else a.queue_room for a in ags)
        if tier == _QUEUE:
            free += sum(a.free_slots for a in ags)
        return nd.blocks(t.spec.requires, g.caps, free, t.predicted, _waiting)

    def _build_needs(self, now: float) -> Needs | None:
        """Capability-bound work ready now, or once its running dependencies
        end within ``prefetch_horizon`` ("about to be" ready). Cost: the
        ready capability heaps plus one look at every running task."""
        if not uses_scarcity(self.config.policy) or not any(
            g.caps for g in self._pool.groups.values()
        ):
            return None
        nd = Needs()
        for req, heap in self._queues.ready.items():
            if req:
                for _, hid, t in heap:
                    if t.heap_id == hid and t.state is _R:
                        nd.add(req, 0.0, t)
        horizon = self.config.prefetch_horizon
        seen: set[int] = set()
        for key, r in list(self._feeders.items()):
            an = r.project.analysis
            if r.state is not _RUN or an is None:
                del self._feeders[key]
                continue
            if remaining(r.predicted, r.started_at, now) <= horizon:
                self._add_soon_children(nd, r, now, seen)
        return nd

    def _add_soon_children(self, nd: Needs, r: TaskRecord, now: float, seen: set[int]) -> None:
        """Needy children of running ``r`` whose other dependencies are done or
        end within ``prefetch_horizon`` too."""
        an = r.project.analysis
        assert an is not None
        for c in an.children[r.index]:
            t = r.project.tasks[c]
            if t.state is not _P or not t.spec.requires or id(t) in seen:
                continue
            seen.add(id(t))
            deps = [r.project.tasks[i] for i in an.parents[c]]
            if all(d.state is _OK or d.state is _RUN for d in deps):
                soon = max(
                    remaining(d.predicted, d.started_at, now) for d in deps if d.state is _RUN
                )
                if soon <= self.config.prefetch_horizon:
                    nd.add(t.spec.requires, soon, t)

    def _note_running(self, t: TaskRecord) -> None:
        """Track ``t`` if it feeds a task with ``requires`` (for ``_build_needs``)."""
        an = t.project.analysis
        if an is not None and any(t.project.tasks[c].spec.requires for c in an.children[t.index]):
            self._feeders[t.key] = t

    def _best_ready_for(self, a: AgentRecord) -> TaskRecord | None:
        """Best READY task ``a`` may run (ranked policies only)."""
        best: tuple[tuple[float, ...], int, TaskRecord] | None = None
        for req, heap in self._queues.ready.items():
            if not req <= a.info.capabilities:
                continue
            while heap and (heap[0][2].heap_id != heap[0][1] or heap[0][2].state is not _R):
                heapq.heappop(heap)
            top = self._tail_task(req) if heap and self._queues.by_rank else None
            top = top or (heap[0] if heap else None)
            if top and (best is None or top[:2] < best[:2]):
                nd = self._needs
                if nd is None or not self._reserved(top[2], a.group, _SLOT, nd):
                    best = top
        return best[2] if best else None

    def _urgency(self, t: TaskRecord) -> tuple[float, ...]:
        """``ReadyQueues.key``, except that a task holding the project's end comes first."""
        if uses_scarcity(self.config.policy) and holds_the_end(
            t.rank, t.project.left, self._slots(), self._margin()
        ):
            return (-1e18, -t.rank, t.index)
        return self._queues.key(t)

    def _margin(self) -> float:
        return margin(self.config.tail_margin, self.durations.errors.spread())

    def _slots(self) -> int:
        """Slots of all agents (counted once per dispatch step)."""
        if self._slot_total < 0:
            self._slot_total = sum(a.info.slots for a in self._pool.agents.values())
        return self._slot_total


def _waiting(t: object) -> bool:
    """Whether needy work recorded in ``Needs`` still waits for a place."""
    s = getattr(t, "state", None)
    return s is _R or s is _P
