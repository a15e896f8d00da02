"""``ReadyQueues``: the ready heaps and the heap of queued work.

Three lazy heaps of task records:

- ``ready[requires]``: READY tasks (not waiting for a planned agent) by the
  policy's task key (``policies.task_key``: effective priority, upward rank,
  index, readiness order), one heap per capability set;
- ``by_rank[requires]``: the same tasks by upward rank alone, kept only for
  policies using scarcity (the tail rule, ``priorities.holds_the_end``);
- ``queued``: tasks in an agent's prefetch queue by the same key, for free
  slots to take from saturated agents (ranked policies that steal on idle).

Invariant (lazy deletion): an entry is live only while the task's stamp
(``heap_id`` for ``ready``/``by_rank``, ``qheap_id`` for ``queued``) equals
the entry's and the task is still in the matching state; readers drop stale
entries, and only those (a queued task whose agent has a free slot for the
moment is live: it waits in ``held`` under its agent's id and goes back into
``queued`` once that agent's slots are all busy, through ``release`` when a
task starts on it, or ``settle`` at the next step). Re-keying a task is
pushing it again. Pure and deterministic: stamps come from the shared
``Counter``.
"""

from __future__ import annotations

import heapq

from workhive.coordinator.model import TaskState
from workhive.coordinator.scheduling.config import SchedulerConfig
from workhive.coordinator.scheduling.policies import task_key, uses_scarcity
from workhive.coordinator.scheduling.records import Counter, TaskRecord

__all__ = ["RANKED_POLICIES", "Entry", "ReadyQueues"]

_R, _A = TaskState.READY, TaskState.ASSIGNED
RANKED_POLICIES = ("default", "critical-path")

Entry = tuple[tuple[float, ...], int, TaskRecord]


def _live_queued(e: Entry) -> bool:
    """Whether a ``queued`` entry still stands for its task: the same push,
    still queued on an agent, not in a plan (planned work is not moved)."""
    t = e[2]
    return t.qheap_id == e[1] and t.state is _A and t.agent is not None and not t.project.plan


class ReadyQueues:
    """Ready and queued work by urgency (see the module docstring)."""

    def __init__(self, config: SchedulerConfig, stamps: Counter) -> None:
        self.config = config
        self.stamps = stamps
        self.ready: dict[frozenset[str], list[Entry]] = {}
        # the same ready tasks by upward rank alone (the tail rule, priorities.holds_the_end)
        self.by_rank: dict[frozenset[str], list[tuple[float, int, TaskRecord]]] = {}
        # queued tasks by urgency, for free slots to take from saturated agents
        self.queued: list[Entry] = []
        # live queued entries set aside while their agent has a free slot, by agent id
        self.held: dict[str, list[Entry]] = {}

    def key(self, t: TaskRecord) -> tuple[float, ...]:
        """The policy's ordering key of ``t`` (smaller goes first)."""
        return task_key(self.config.policy, t.eff, t.rank, t.index, t.ready_seq)

    def push_ready(self, t: TaskRecord) -> None:
        """(Re-)insert READY ``t``; any older entry of it becomes stale."""
        t.heap_id = self.stamps.next()
        k = self.key(t)
        heap = self.ready.get(t.spec.requires)
        if heap is None:
            heap = self.ready[t.spec.requires] = []
        heapq.heappush(heap, (k, t.heap_id, t))
        if uses_scarcity(self.config.policy):
            heapq.heappush(self.by_rank.setdefault(t.spec.requires, []), (-t.rank, t.heap_id, t))

    def push_queued(self, t: TaskRecord) -> None:
        """Index ASSIGNED ``t`` for free slots elsewhere, when the policy steals on idle."""
        cfg = self.config
        if (
            cfg.policy in RANKED_POLICIES
            and cfg.stealing_enabled
            and cfg.steal_on_idle
            and t.spec.priority < cfg.priority_threshold
        ):
            t.qheap_id = self.stamps.next()
            heapq.heappush(self.queued, (self.key(t), t.qheap_id, t))

    def top_queued(self) -> Entry | None:
        """Most urgent task queued on an agent whose slots are all busy; it
        stays at ``queued[0]``.

        A task whose own agent has a free slot right now is set aside, not
        dropped: that slot may go to a more urgent ready task, leaving the
        task queued behind it, and a slot freeing elsewhere must still find
        it (else it waits out the whole task ahead of it). Set aside, it is
        not scanned again by every call of a step (with many agents between
        a freed slot and its next start, rescanning them made each step
        quadratic)."""
        h = self.queued
        while h:
            t = h[0][2]
            if not _live_queued(h[0]) or t.agent is None:
                heapq.heappop(h)  # stale: no longer queued, or planned
            elif t.agent.free_slots > 0:
                self.held.setdefault(t.agent.info.id, []).append(heapq.heappop(h))
            else:
                return h[0]
        return None

    def release(self, agent_id: str) -> None:
        """``agent_id``'s slots are all busy again: its queued work set aside
        by :meth:`top_queued` is back in reach of slots freeing elsewhere."""
        for e in self.held.pop(agent_id, ()):
            heapq.heappush(self.queued, e)

    def settle(self) -> None:
        """At a step's start: drop set-aside entries gone stale (started,
        moved, requeued), and release the work of every agent whose slots
        filled by a path that did not call :meth:`release` (a restore)."""
        for agent_id, entries in list(self.held.items()):
            live = [
                e
                for e in entries
                if _live_queued(e) and e[2].agent is not None and e[2].agent.info.id == agent_id
            ]
            self.held[agent_id] = live
            agent = live[0][2].agent if live else None
            if agent is None or agent.free_slots <= 0:
                self.release(agent_id)

    def rebuild(self) -> None:
        """Re-key every live ready task (after a rerank changed ranks)."""
        tasks = [e[2] for h in self.ready.values() for e in h if e[2].heap_id == e[1]]
        self.ready = {}
        self.by_rank = {}
        for t in tasks:
            if t.state is _R and not t.planned:
                self.push_ready(t)
