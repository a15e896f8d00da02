"""Work-stealing planner: a pure function from agents' queues to moves.

Rules (docs/scheduling.md, "Stealing"):
- load = number of queued (assigned, not started) tasks, or in predictive mode
  their predicted seconds plus the agent's running work;
- a victim/thief pair qualifies when the load difference is at least
  ``steal_threshold`` tasks (predictive: ``max_predictive_load_ms``);
- at most ``max_steal_batch`` tasks per (victim, thief) pair, each move keeping
  the thief's load no higher than the victim's (at most half the difference),
  so the max-min spread never grows;
- lowest priority first; priority >= ``priority_threshold``, started tasks and
  tasks moved less than ``steal_cooldown`` ago never move;
- the thief must hold every capability the task requires and have room;
- an agent is either a victim or a thief within one call;
- steal on idle: an idle thief (a free slot, nothing queued) may take queued
  work from a victim whose slots are all busy even below the threshold, as
  long as the task would start sooner (count mode: the victim has a queue;
  predictive: thief load + task < victim load) and it would otherwise wait
  longer than ``move_min_wait`` (the victim's ``frees_in`` plus the predicted
  work ahead of it). The task goes straight into the thief's free slot, so
  queued loads stay within the old [min, max].
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from workhive.coordinator.model import TaskKey
from workhive.coordinator.scheduling.config import SchedulerConfig

__all__ = ["AgentQueue", "QueuedTask", "StealMove", "agent_load", "plan_steals"]


@dataclass(frozen=True, slots=True)
class QueuedTask:
    """A task held by an agent (queued or started)."""

    key: TaskKey
    priority: int = 5
    predicted: float = 1.0
    requires: frozenset[str] = frozenset()
    started: bool = False
    last_moved: float | None = None


@dataclass(frozen=True, slots=True)
class AgentQueue:
    """An agent as the stealing planner sees it.

    ``tasks`` lists what the agent holds in queue order; ``room`` is how many
    more tasks it may accept (free slots + free prefetch places);
    ``running_load`` the predicted seconds left of its started work;
    ``frees_in`` the predicted seconds until its first busy slot frees
    (``inf``: unknown, e.g. hung).
    """

    agent_id: str
    capabilities: frozenset[str] = frozenset()
    tasks: tuple[QueuedTask, ...] = ()
    room: int = 0
    running_load: float = 0.0
    free_slots: int = 0
    frees_in: float = math.inf


@dataclass(frozen=True, slots=True)
class StealMove:
    """Move the unstarted claim on ``key`` from ``from_agent`` to ``to_agent``."""

    key: TaskKey
    from_agent: str
    to_agent: str


def agent_load(q: AgentQueue, predictive: bool) -> float:
    """Load used for stealing decisions."""
    if predictive:
        return q.running_load + sum(t.predicted for t in q.tasks if not t.started)
    return float(sum(1 for t in q.tasks if not t.started))


def plan_steals(
    queues: Sequence[AgentQueue],
    config: SchedulerConfig,
    now: float,
    thieves: Collection[str] | None = None,
) -> list[StealMove]:
    """Plan steals; ``thieves`` restricts who may steal (steal-on-idle)."""
    if not config.stealing_enabled or len(queues) < 2:
        return []
    pred = config.predictive_stealing
    threshold = config.predictive_threshold if pred else float(config.steal_threshold)
    load = {q.agent_id: agent_load(q, pred) for q in queues}
    room = {q.agent_id: q.room for q in queues}
    by_id = {q.agent_id: q for q in queues}
    victims = sorted(
        (q for q in queues if any(not t.started for t in q.tasks)),
        key=lambda q: (-load[q.agent_id], q.agent_id),
    )
    role: dict[str, str] = {}
    moves: list[StealMove] = []
    taken: set[TaskKey] = set()
    pair_n: dict[tuple[str, str], int] = {}
    if config.steal_on_idle:
        idle = [
            q
            for q in queues
            if q.free_slots > 0
            and not any(not t.started for t in q.tasks)
            and (thieves is None or q.agent_id in thieves)
        ]
        for th in sorted(idle, key=lambda q: (load[q.agent_id], q.agent_id)):
            tid = th.agent_id
            n = 0
            for v in victims:
                vid = v.agent_id
                if v.free_slots > 0 or vid == tid or role.get(vid) == "thief":
                    continue
                wait = _waits(v)
                vt = _movable(v, config, now)[::-1]  # tail first among equals
                for t in sorted(vt, key=lambda t: t.priority):
                    if wait[t.key] <= config.move_min_wait:
                        continue  # its own agent starts it before a move would land
                    if n >= min(th.free_slots, config.max_steal_batch, room[tid]):
                        break
                    d = t.predicted if pred else 0.0
                    if t.key in taken or not t.requires <= th.capabilities:
                        continue
                    if pred and not load[tid] + d < load[vid]:
                        continue
                    moves.append(StealMove(t.key, vid, tid))
                    pair_n[(vid, tid)] = pair_n.get((vid, tid), 0) + 1
                    taken.add(t.key)
                    load[vid] -= t.predicted if pred else 1.0
                    load[tid] += d
                    room[tid] -= 1
                    n += 1
                    role[vid], role[tid] = "victim", "thief"
                if n >= min(th.free_slots, config.max_steal_batch, room[tid]):
                    break
    pool = sorted(
        (
            q
            for q in queues
            if role.get(q.agent_id) != "victim" and (thieves is None or q.agent_id in thieves)
        ),
        key=lambda q: (load[q.agent_id], q.agent_id),
    )
    for v in victims:
        vid = v.agent_id
        if role.get(vid) == "thief":
            continue
        cands = [q for q in pool if q.agent_id != vid and role.get(q.agent_id) != "victim"]
        if not cands:
            continue
        if load[vid] - load[cands[0].agent_id] < threshold:
            if role.get(vid) == "victim":
                continue  # it gave work away on idle: its load fell out of order
            # untouched victims come by falling load and thieves' loads only
            # rise: no later victim can clear the threshold either
            break
        pending = [t for t in _movable(v, config, now) if t.key not in taken]
        if not pending:
            continue
        # lowest priority first; among equals, the queue's tail first
        pos = {t.key: i for i, t in enumerate(v.tasks)}
        pending.sort(key=lambda t: (t.priority, -pos[t.key]))
        for th in cands:
            tid = th.agent_id
            if not pending or load[vid] - load[tid] < threshold:
                break
            n = pair_n.get((vid, tid), 0)
            got = 0
            rest: list[QueuedTask] = []
            for t in pending:
                d = t.predicted if pred else 1.0
                if (
                    n < config.max_steal_batch
                    and room[tid] > 0
                    and t.requires <= by_id[tid].capabilities
                    and load[tid] + d <= load[vid] - d
                ):
                    moves.append(StealMove(t.key, vid, tid))
                    load[vid] -= d
                    load[tid] += d
                    room[tid] -= 1
                    n += 1
                    got += 1
                else:
                    rest.append(t)
            pending = rest
            if got:
                role[vid] = "victim"
                role[tid] = "thief"
        pool.sort(key=lambda q: (load[q.agent_id], q.agent_id))  # nearly sorted: linear
    return moves


def _movable(q: AgentQueue, config: SchedulerConfig, now: float) -> list[QueuedTask]:
    return [
        t
        for t in q.tasks
        if not t.started
        and t.priority < config.priority_threshold
        and (t.last_moved is None or now - t.last_moved >= config.steal_cooldown)
    ]


def _waits(q: AgentQueue) -> dict[TaskKey, float]:
    """Predicted seconds each held task waits on ``q`` before it starts."""
    out: dict[TaskKey, float] = {}
    ahead = q.frees_in
    for t in q.tasks:
        out[t.key] = ahead
        ahead += t.predicted
    return out
