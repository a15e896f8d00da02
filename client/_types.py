"""What the client sends and receives: frozen dataclasses, never protobuf.

``Task`` and ``Project`` are what :meth:`workhive.client.Client.submit` takes
(any object with the same attributes will do, e.g. a spec the coordinator's
project loader returns). Field meanings: docs/client.md; the task schema and
its limits: docs/design.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class TaskState(StrEnum):
    """Lifecycle of a task (docs/design.md). ``UNKNOWN`` answers a query for an
    id that does not exist, so "queued" is never confused with "lost"."""

    UNKNOWN = "unknown"
    PENDING = "pending"
    READY = "ready"
    ASSIGNED = "assigned"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)


class TaskLike(Protocol):
    """The attributes ``submit`` reads from each task. Read when present:
    ``timeout`` (seconds or ``None``), ``retry_backoff`` (an object with
    ``base`` and ``cap`` seconds, or ``None``) and ``blocks``."""

    @property
    def id(self) -> str: ...
    @property
    def depends_on(self) -> Sequence[str]: ...
    @property
    def priority(self) -> int: ...
    @property
    def estimate(self) -> float | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def branch(self) -> str: ...
    @property
    def requires(self) -> frozenset[str]: ...
    @property
    def payload(self) -> Any: ...
    @property
    def max_attempts(self) -> int: ...


class ProjectLike(Protocol):
    """The attributes ``submit`` reads from a project."""

    @property
    def id(self) -> str: ...
    @property
    def tasks(self) -> Sequence[TaskLike]: ...


@dataclass(frozen=True, slots=True)
class RetryBackoff:
    """``min(cap, base * 2**(attempt-1))`` seconds (with jitter) before a
    failed attempt is retried; the coordinator checks ``0 <= base <= cap``."""

    base: float
    cap: float


@dataclass(frozen=True, slots=True)
class Task:
    """One task of a project to submit; the coordinator validates it."""

    id: str
    depends_on: tuple[str, ...] = ()
    priority: int = 5
    estimate: float | None = None
    kind: str = ""
    branch: str = ""
    requires: frozenset[str] = frozenset()
    payload: Any = None
    max_attempts: int = 3
    blocks: tuple[str, ...] = ()  # ``add_tasks`` only: existing unstarted tasks that wait for it
    timeout: float | None = None  # seconds an attempt may run (None: no timeout)
    retry_backoff: RetryBackoff | None = None  # delay before each retry (None: at once)


@dataclass(frozen=True, slots=True)
class TasksAdded:
    """An ``add_tasks`` batch that committed at ``revision``; the project has
    ``task_count`` tasks now."""

    project_id: str
    revision: int
    added: int
    task_count: int


@dataclass(frozen=True, slots=True)
class Project:
    """A project to submit: an id and a DAG of tasks."""

    id: str
    tasks: tuple[Task, ...]


@dataclass(frozen=True, slots=True)
class Submitted:
    """A submit that committed: the project is visible from ``revision`` on."""

    project_id: str
    revision: int
    task_count: int


@dataclass(frozen=True, slots=True)
class Leader:
    """The elected leader; ``leader_id`` is empty while none is known."""

    leader_id: str = ""
    address: str = ""
    term: int = 0

    @property
    def elected(self) -> bool:
        return bool(self.leader_id)


@dataclass(frozen=True, slots=True)
class TaskStatus:
    project_id: str
    task_id: str
    state: TaskState
    agent_id: str = ""
    attempt: int = 0
    reason: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    result: Any = None  # ``Client.task`` only: the task's JSON result (None: none)
    output_tail: str = ""  # ``Client.task`` only
    # from the leader only (0 / "" on a follower): the running attempt's
    # deadline, the next retry's time (unix seconds), the last failed
    # attempt's reason ("deadline exceeded", ...)
    deadline_at: float = 0.0
    retry_at: float = 0.0
    last_failure: str = ""
    # from the leader only: the running attempt's last reported progress
    # (0..1, None: no report) and its note (``Task.progress`` in the agent SDK)
    progress: float | None = None
    progress_note: str = ""


@dataclass(frozen=True, slots=True)
class ProjectStatus:
    project_id: str
    counts: Mapping[str, int]
    finished: bool
    tasks: tuple[TaskStatus, ...] = ()
    submitted_at: float = 0.0
    finished_at: float = 0.0
    critical_path_seconds: float = 0.0
    total_work_seconds: float = 0.0

    def count(self, state: TaskState | str) -> int:
        return self.counts.get(str(state), 0)


@dataclass(frozen=True, slots=True)
class AgentStatus:
    agent_id: str
    capabilities: tuple[str, ...]
    slots: int
    running: int
    queued: int
    load_seconds: float
    connected: bool
    speed_factor: float = 0.0
    """How many times longer than the fleet's typical agent it takes, learned
    from its completions: 1.0 typical (or not known yet), 2.0 twice as long;
    0.0 when the replica that answered does not lead (only the leader learns)."""


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """One replica's answer to ``status``.

    ``stale`` is true when that replica could not confirm its view with etcd
    just now (``stale_reason`` says why): the data is the last it saw, possibly
    out of date. The CLI exits 69 on a stale answer (docs/client.md).
    """

    leader: Leader
    projects: tuple[ProjectStatus, ...]
    agents: tuple[AgentStatus, ...]
    metrics: Mapping[str, float] = field(default_factory=dict)
    stale: bool = False
    stale_reason: str = ""

    def project(self, project_id: str) -> ProjectStatus | None:
        return next((p for p in self.projects if p.project_id == project_id), None)


@dataclass(frozen=True, slots=True)
class ProjectEvent:
    """A task of a watched project changed state (the first events are the
    current state of every task)."""

    project_id: str
    task: TaskStatus
    revision: int
    project_finished: bool
