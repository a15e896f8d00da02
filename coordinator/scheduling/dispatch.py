"""``Dispatch``: one assignment step after a batch of events.

Order within a step: queued tasks start on freed slots (unless a more urgent
ready or queued task takes the slot, and no free slot of a faster agent,
``agent_speeds``, would take that task instead), plan sequences are followed, then free
slots, then agents that may start a short task ahead (``start_ahead``) and
then prefetch room are filled with the most urgent ready task an eligible
agent may take (``Placement``), a free slot may instead take a more urgent
task queued on a saturated agent, and finally idle agents steal.

Invariant: a step ends with no ready task that some free slot could take
(under the placement rules) and with ``dirty`` cleared. Deterministic: same
state and ``now``, same commands. A layer of ``SchedulerState``.
"""

from __future__ import annotations

import heapq

from workhive.coordinator.model import TaskState
from workhive.coordinator.scheduling.agent_pool import AHEAD, QUEUE, SLOT
from workhive.coordinator.scheduling.events import StartTask
from workhive.coordinator.scheduling.records import AgentRecord, TaskRecord
from workhive.coordinator.scheduling.steal_application import StealApplication

_R = TaskState.READY
_SLOT, _QUEUE, _AHEAD = SLOT, QUEUE, AHEAD

__all__ = ["Dispatch"]


class Dispatch(StealApplication):
    """The per-step dispatch loop (see the module docstring)."""

    def _dispatch(self, now: float) -> None:
        self._needs = self._build_needs(now)
        self._now = now
        self._slot_total = -1
        self._queues.settle()
        self._start_queued(now)
        if self._plans.planned:
            self._plans.dispatch_planned(now)
        tiers = (_SLOT, _AHEAD, _QUEUE) if self.config.start_ahead > 0 else (_SLOT, _QUEUE)
        for tier in tiers:
            while True:
                best: tuple[tuple[float, ...], int, TaskRecord] | None = None
                for req, heap in self._queues.ready.items():
                    while heap and (heap[0][2].heap_id != heap[0][1] or heap[0][2].state is not _R):
                        heapq.heappop(heap)
                    top = self._tail_task(req) if heap and self._queues.by_rank else None
                    top = top or (heap[0] if heap else None)
                    if top is None or (best is not None and top[:2] >= best[:2]):
                        continue
                    if tier == _AHEAD and not self._short(top[2]):
                        continue
                    if self._pick_agent(top[2], tier) is not None:
                        best = top
                if tier == _SLOT and self._queued_to_free_slot(best, now):
                    continue
                if best is None:
                    break
                t = best[2]
                t.heap_id = -1  # its heap entries are now stale (lazy deletion)
                a = self._pick_agent(t, tier)
                assert a is not None
                self._assign(t, a, now, ahead=tier == _AHEAD)
        if self.config.stealing_enabled and self.config.steal_on_idle and self._pool.queued:
            idle = [
                a.info.id
                for a in self._pool.dirty.values()
                if a.alive and a.free_slots > 0 and not a.queue
            ]
            if idle:
                self._steal(now, idle)
        self._pool.dirty.clear()

    def _queued_to_free_slot(
        self, best: tuple[tuple[float, ...], int, TaskRecord] | None, now: float
    ) -> bool:
        """A free slot takes the most urgent task queued on a saturated agent
        that is more urgent than ``best`` and worth moving; True when one
        moved (the step's state changed). Queued tasks not worth moving (or
        that no free slot may run) are set aside for the rest of the step
        without a new look at the ready heaps each; with no free slot at all
        nothing is looked at (at 1,000 agents the queue holds ~1,000 tasks and
        each step used to walk all of them)."""
        if not self._queues.queued or not self._any_free_slot():
            return False
        while (q := self._queues.top_queued()) is not None:
            if best is not None and (self._urgency(q[2]), q[1]) >= best[:2]:
                return False
            if self._steal_to_slot(q[2], now):
                return True
        return False

    def _faster_free(self, t: TaskRecord, a: AgentRecord) -> bool:
        """Whether a free slot of an agent faster than ``a`` would take ``t``
        (``agent_speeds``): then ``a`` starts its own prefetch and ``t`` goes
        to that slot in this step's ready loop."""
        if not self._pool.speeds:
            return False
        b = self._pick_agent(t, _SLOT)
        return b is not None and b is not a and b.speed_class < a.speed_class

    def _any_free_slot(self) -> bool:
        """Whether some live agent has a free slot."""
        return any(self._pool.top_agent(g, _SLOT) is not None for g in self._pool.groups.values())

    def _start_queued(self, now: float) -> None:
        ranked = self.config.policy in ("default", "critical-path")
        for a in list(self._pool.dirty.values()):
            while a.alive and a.queue and a.free_slots > 0:
                if ranked and not a.queue[0].project.plan:
                    # a freed slot takes a more urgent ready task before its prefetch
                    r = self._best_ready_for(a)
                    q = self._queues.top_queued() if self._queues.queued else None
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
                    if r is not None and self._urgency(r) < own and not self._faster_free(r, a):
                        r.heap_id = -1  # lazy deletion from its heaps
                        self._assign(r, a, now)
                        continue
                t = a.queue.pop(0)
                self._run(t, a, now)
                self._out.append(StartTask(t.key, a.info.id, t.attempt))
            if not a.queue:
                self._pool.queued.pop(a.info.id, None)
            if a.alive:
                self._pool.touch(a)
