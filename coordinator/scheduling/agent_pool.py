"""``AgentPool``: the agents the scheduler knows and the indexes over them.

It owns the agent records (join order), their capability groups with one lazy
heap per tier (``SLOT``: agents with a free slot; ``QUEUE``: agents with
prefetch room; ``AHEAD``: agents whose busy slots hold only short work and
that may start a short task ahead, see ``SchedulerConfig.start_ahead``),
the branch owners (affinity), the agents with a non-empty
queue and the agents changed in the current step (``dirty``). It answers how
long an agent's slots stay busy (``frees_in``) and what the stealing planner
sees of an agent (``view``).

Invariant: after any change to an agent's slots, queue or load the caller
calls ``touch``, which re-stamps the agent in its group's heaps; an entry
whose stamp differs from the agent's current one is stale and skipped
(lazy deletion). ``queued`` holds exactly the live agents whose queue is
non-empty. Pure: no clock, no I/O; ``now`` is passed in.
"""

from __future__ import annotations

import heapq

from workhive.coordinator.model import AgentInfo
from workhive.coordinator.scheduling.policies import agent_key, uses_speeds
from workhive.coordinator.scheduling.records import AgentGroup, AgentRecord, Counter
from workhive.coordinator.scheduling.stealing import AgentQueue, QueuedTask

__all__ = ["AHEAD", "QUEUE", "SLOT", "AgentPool", "frees_in", "remaining"]

SLOT, QUEUE, AHEAD = 0, 1, 2


LAG_WEIGHT = 0.05
"""Weight of the newest sample in the dispatch lag's moving average."""


class AgentPool:
    """Agents, capability groups and their heaps (see the module docstring).

    ``stamps`` is the push counter shared with the ready queues, so that
    every heap entry gets a distinct, increasing stamp."""

    def __init__(
        self,
        policy: str,
        stamps: Counter,
        ahead: float = 0.0,
        ahead_tasks: int = 0,
        speeds: bool = False,
    ) -> None:
        self.policy = policy
        self.speeds = speeds and uses_speeds(policy)  # a free slot of a faster agent first
        self.stamps = stamps
        self.ahead = ahead  # SchedulerConfig.start_ahead
        self.ahead_tasks = ahead_tasks  # SchedulerConfig.start_ahead_tasks
        self.lag = 0.0  # dispatch lag, seconds (observe_lag)
        self.agents: dict[str, AgentRecord] = {}
        self.groups: dict[frozenset[str], AgentGroup] = {}
        self.eligible: dict[frozenset[str], list[AgentGroup]] = {}
        self.branch_owner: dict[tuple[str, str], AgentRecord] = {}
        self.queued: dict[str, AgentRecord] = {}  # agents with a non-empty queue
        self.dirty: dict[str, AgentRecord] = {}  # agents changed in this step

    def group(self, caps: frozenset[str]) -> AgentGroup:
        """The group of agents with capabilities ``caps`` (created on first use)."""
        g = self.groups.get(caps)
        if g is None:
            g = self.groups[caps] = AgentGroup(caps)
            self.eligible.clear()
        return g

    def join(self, info: AgentInfo, seq: int) -> AgentRecord:
        """Record a new agent (``seq``: its join order, the tie-break of ``agent_key``)."""
        a = self.agents[info.id] = AgentRecord(info, seq, self.group(info.capabilities))
        return a

    def touch(self, a: AgentRecord) -> None:
        """Re-index ``a`` in its group's heaps after any change."""
        self.dirty[a.info.id] = a
        k = agent_key(self.policy, a.load, a.seq)
        if a.free_slots > 0:
            a.slot_stamp = self.stamps.next()
            ks = (a.speed_class, k[0], a.explored, *k[1:]) if self.speeds else k
            heapq.heappush(a.group.heaps[SLOT], (ks, a.slot_stamp, a))
        else:
            a.slot_stamp = -1
        if a.queue_room > 0:
            a.queue_stamp = self.stamps.next()
            heapq.heappush(a.group.heaps[QUEUE], (k, a.queue_stamp, a))
        else:
            a.queue_stamp = -1
        if self.may_start_ahead(a):
            a.ahead_stamp = self.stamps.next()
            heapq.heappush(a.group.heaps[AHEAD], (k, a.ahead_stamp, a))
        else:
            a.ahead_stamp = -1

    def may_start_ahead(self, a: AgentRecord) -> bool:
        """Whether ``a`` has no free slot, room for another task started
        ahead, and only short work (``ahead`` predicted seconds per slot) on
        its slots."""
        if self.ahead <= 0 or a.info.pull or a.free_slots > 0:
            return False
        if len(a.running) >= a.info.slots + self.ahead_tasks:
            return False
        return sum(t.predicted for t in a.running.values()) <= self.ahead * a.info.slots

    def observe_lag(self, seconds: float) -> None:
        """A finished task's run as the scheduler saw it (from its start here
        to its success here) less the duration its agent reported: the
        assignment's and the completion's way between leader and agent.
        Only tasks started on a free slot are samples (one started ahead also
        waited for a slot, and a long task ahead of it must not pass for
        lag). Kept as a moving average (``LAG_WEIGHT``)."""
        self.lag += LAG_WEIGHT * (max(0.0, seconds) - self.lag)

    def overrunning(self, a: AgentRecord, now: float) -> bool:
        """Whether a task on ``a``'s slots runs well past its prediction (then
        nothing more is started ahead behind it). The dispatch lag is allowed
        for: a task is not overrunning merely because its start and its
        completion take time to travel (with a busy leader and a thousand
        agents, more than ``ahead`` itself)."""
        limit = self.ahead + self.lag
        return any(
            t.started_at is not None and now - t.started_at > t.predicted + limit
            for t in a.running.values()
        )

    def eligible_groups(self, req: frozenset[str]) -> list[AgentGroup]:
        """Groups whose capabilities cover ``req`` (cached until a group is added)."""
        gs = self.eligible.get(req)
        if gs is None:
            gs = self.eligible[req] = [g for g in self.groups.values() if req <= g.caps]
        return gs

    @staticmethod
    def top_agent(g: AgentGroup, tier: int) -> tuple[tuple[float, ...], int, AgentRecord] | None:
        """The best live entry of ``g``'s ``tier`` heap (stale entries dropped)."""
        heap = g.heaps[tier]
        while heap:
            e = heap[0]
            a = e[2]
            stamp = (a.slot_stamp, a.queue_stamp, a.ahead_stamp)[tier]
            if a.alive and a.group is g and stamp == e[1]:
                return e
            heapq.heappop(heap)
        return None

    @staticmethod
    def view(a: AgentRecord, now: float) -> AgentQueue:
        """What the stealing planner (``stealing.plan_steals``) sees of ``a``."""
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
            frees_in=frees_in(a, now),
        )


def frees_in(a: AgentRecord, now: float) -> float:
    """Predicted seconds until ``a``'s first busy slot frees (0: one is free)."""
    if a.free_slots > 0:
        return 0.0
    return min((remaining(r.predicted, r.started_at, now) for r in a.running.values()), default=0.0)


def remaining(predicted: float, started_at: float | None, now: float) -> float:
    """Predicted seconds left of a running task; an overdue one is expected to
    run as long again as it has overrun."""
    if started_at is None:
        return predicted
    elapsed = now - started_at
    return predicted - elapsed if elapsed <= predicted else elapsed - predicted
