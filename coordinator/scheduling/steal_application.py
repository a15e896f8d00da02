"""``StealApplication``: moving queued work to where it starts sooner.

Two ways a task queued on a busy agent moves: a free slot takes the most
urgent queued task when waiting on its own agent (until that agent's first
slot frees, plus the work queued ahead) costs more than ``move_min_wait``
(``_steal_to_slot``, ``_worth_moving``); and idle agents (or a ``StealTick``)
apply the moves planned by ``stealing.plan_steals`` (``_steal``). Both end in
``_move``, which emits one ``StealTask`` per moved task.

Invariant: only ASSIGNED tasks of projects without a plan move; a move keeps
the task's attempt and its predicted load moves with it. A layer of
``SchedulerState`` (it owns every attribute declared here).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from workhive.coordinator.model import TaskState
from workhive.coordinator.scheduling.agent_pool import SLOT, frees_in
from workhive.coordinator.scheduling.events import StealTask
from workhive.coordinator.scheduling.records import (
    AgentRecord,
    TaskRecord,
)
from workhive.coordinator.scheduling.stealing import plan_steals
from workhive.coordinator.scheduling.transitions import TaskTransitions

_A = TaskState.ASSIGNED
_SLOT = SLOT

__all__ = ["StealApplication"]


class StealApplication(TaskTransitions):
    """Steal on idle and steal ticks (see the module docstring)."""

    _push_queued_later: list[TaskRecord]

    def _steal_to_slot(self, t: TaskRecord, now: float) -> bool:
        """A free slot takes ``t``, the top of the queued heap, from a saturated
        agent's queue (steal on idle); False when nobody free can run it now
        or its own agent starts it soon: then it is off the heap until the
        end of this step (re-pushed there)."""
        thief = self._pick_agent(t, _SLOT)
        victim = t.agent
        if thief is None or victim is None or not self._worth_moving(t, now):
            heapq.heappop(self._queues.queued)
            t.qheap_id = -1
            self._push_queued_later.append(t)
            return False
        self._move(t, victim, thief, now)
        return True

    def _worth_moving(self, t: TaskRecord, now: float) -> bool:
        """Whether queued ``t`` would wait on its own agent longer than a move
        costs: until the agent's first slot frees, plus the work queued ahead."""
        a = t.agent
        if a is None or a.free_slots > 0:
            return False
        wait = frees_in(a, now)
        for q in a.queue:
            if q is t:
                break
            wait += q.predicted
        return wait > self.config.move_min_wait

    def _steal(self, now: float, thieves: Iterable[str] | None) -> None:
        cfg = self.config
        if not cfg.stealing_enabled or not self._pool.queued:
            return
        if thieves is None:
            agents: list[AgentRecord] = list(self._pool.agents.values())
            allowed: set[str] | None = None
        else:
            allowed = set(thieves)
            victims = [
                a
                for a in self._pool.queued.values()
                if cfg.predictive_stealing
                or len(a.queue) >= cfg.steal_threshold
                or (a.free_slots <= 0 and self._worth_moving(a.queue[-1], now))
            ]
            if not victims:
                return
            agents = victims + [self._pool.agents[i] for i in allowed if i not in self._pool.queued]
        moves = plan_steals([self._pool.view(a, now) for a in agents], cfg, now, allowed)
        pairs: set[tuple[str, str]] = set()
        for m in moves:
            t = self._task(m.key)
            thief = self._pool.agents.get(m.to_agent)
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
        self,
        t: TaskRecord,
        victim: AgentRecord,
        thief: AgentRecord,
        now: float,
        count_event: bool = True,
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
            self._pool.queued[thief.info.id] = thief
            self._queues.push_queued(t)
        self._pool.touch(thief)
        self._stats.steals += 1
        self._stats.last_steal = now
        if count_event:
            self._stats.steal_events += 1
        self._out.append(StealTask(t.key, victim.info.id, thief.info.id, t.attempt, start))
