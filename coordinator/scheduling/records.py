"""The scheduler's records: tasks, projects, agents, agent groups, counters.

Plain mutable records shared by ``SchedulerState`` and its collaborators
(``agent_pool``, ``ready_queues``, ``plan_following``, ...). They hold no
behaviour beyond two derived agent figures (``free_slots``, ``queue_room``).

Invariants kept by their users: a task's ``agent`` is set exactly while it is
ASSIGNED (in that agent's ``queue``) or RUNNING (in its ``running``); an
agent's ``load`` is the sum of ``predicted`` over the tasks it holds; a heap
entry is live only while its stamp (``heap_id``, ``qheap_id``,
``slot_stamp``, ``queue_stamp``) equals the record's current one (lazy
deletion). ``Counter`` values only grow, so ties break in push order.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

from workhive.coordinator.model import AgentInfo, ProjectSpec, TaskKey, TaskSpec, TaskState
from workhive.coordinator.scheduling.graph import GraphAnalysis
from workhive.coordinator.scheduling.planner_types import Plan

__all__ = [
    "AgentGroup",
    "AgentRecord",
    "Counter",
    "DispatchStats",
    "ProjectRecord",
    "TaskRecord",
]

_P = TaskState.PENDING


class Counter:
    """A monotonically increasing sequence number shared by its users."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def next(self) -> int:
        """Advance and return the new value."""
        self.value += 1
        return self.value


class TaskRecord:
    """One task as the scheduler tracks it: its state, holder, ranks and heap stamps."""

    __slots__ = (
        "agent",
        "attempt",
        "eff",
        "heap_id",
        "index",
        "key",
        "lag_sample",
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

    def __init__(self, key: TaskKey, spec: TaskSpec, index: int, project: ProjectRecord) -> None:
        self.key = key
        self.spec = spec
        self.index = index
        self.project = project
        self.state = _P
        self.attempt = 0
        self.agent: AgentRecord | None = None
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
        self.lag_sample = False  # started on a free slot here: its run is a dispatch-lag sample
        self.planned = False


class ProjectRecord:
    """One project: its task records, cached analysis, plan and progress counters.

    ``spec`` is the project as its task records hold it now (tasks added,
    dependencies grown), built again only when read after :meth:`grown`: an
    addition to a large project must not copy every task spec."""

    __slots__ = (
        "_base",
        "_spec",
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
        "tasks",
        "unestimated",
    )

    def __init__(self, spec: ProjectSpec) -> None:
        self._base = spec  # id, agents, source
        self._spec: ProjectSpec | None = spec
        self.tasks: list[TaskRecord] = []
        self.by_id: dict[str, TaskRecord] = {}
        self.calibration = 0  # DurationModel.calibration at the last rerank
        self.analysis: GraphAnalysis | None = None
        self.remaining = len(spec.tasks)
        self.plan: Plan | None = None
        self.plan_seqs: dict[str, deque[TaskRecord]] = {}
        self.rank_version = -1
        self.since_rank = 0
        self.unestimated = any(t.estimate is None for t in spec.tasks)
        self.cp_done = 0.0
        self.left = 0.0  # predicted seconds of unfinished work
        self.finished: str | None = None

    @property
    def id(self) -> str:
        return self._base.id

    @property
    def spec(self) -> ProjectSpec:
        if self._spec is None:
            self._spec = replace(self._base, tasks=tuple(t.spec for t in self.tasks))
        return self._spec

    def grown(self) -> None:
        """Tasks were added or their specs changed: ``spec`` is built again when read."""
        self._spec = None


class AgentRecord:
    """One agent: its slots, prefetch queue, predicted load and heap stamps."""

    __slots__ = (
        "ahead_stamp",
        "alive",
        "answered",
        "asks",
        "chain_full",
        "explored",
        "group",
        "info",
        "load",
        "queue",
        "queue_stamp",
        "running",
        "seq",
        "slot_stamp",
        "speed_class",
    )

    def __init__(self, info: AgentInfo, seq: int, group: AgentGroup) -> None:
        self.info = info
        self.seq = seq
        self.group = group
        self.running: dict[TaskKey, TaskRecord] = {}
        self.queue: list[TaskRecord] = []
        self.load = 0.0
        self.slot_stamp = -1
        self.queue_stamp = -1
        self.ahead_stamp = -1
        self.speed_class = 0  # agent_speeds.AgentSpeeds.klass: 0 typical, 1 ~1.4x slower
        self.explored = 0  # agent_speeds.AgentSpeeds.explored
        self.alive = True
        self.chain_full = False  # a task was not chained here for want of room (chain_ahead)
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
class AgentGroup:
    """Agents with the same capabilities; one lazy heap per tier (``SLOT``,
    ``QUEUE``, ``AHEAD``)."""

    caps: frozenset[str]
    heaps: tuple[list[tuple[tuple[float, ...], int, AgentRecord]], ...] = field(
        default_factory=lambda: ([], [], [])
    )


@dataclass(slots=True)
class DispatchStats:
    """Counters behind ``SchedulerState.metrics``."""

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
