"""Domain types shared by every coordinator layer.

Frozen dataclasses only: no I/O, no protobuf, no etcd. The scheduling core,
the etcd state layer and the gRPC edge all speak these types; protobuf stays at
the gRPC edge (``to_proto``/``from_proto`` live there) and JSON encoding for
etcd values lives in the etcd layer.

Invariants kept here:
- a ``ProjectSpec`` is valid once constructed by the loader: ids unique,
  dependencies known, acyclic, priorities in 0..10 (see ``project_files`` and ``task_schema``);
- ``TaskState`` order follows the lifecycle; terminal states never change.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

MAX_PRIORITY = 10
DEFAULT_PRIORITY = 5
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_PRIORITY_THRESHOLD = 8
MAX_PAYLOAD_BYTES = 64 * 1024


class TaskState(enum.StrEnum):
    """Lifecycle of a task (docs/design.md, "Task state machine")."""

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


@dataclass(frozen=True, slots=True)
class RetryBackoff:
    """Delay before a failed attempt is retried: ``min(cap, base * 2**(n-1))``
    seconds after failed attempt ``n``, with deterministic jitter (the
    scheduling core's ``retry_policy``). Invariant: ``0 <= base <= cap``."""

    base: float
    cap: float


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task of a project file, validated.

    ``estimate`` is the expected duration in seconds (``None``: learned per
    ``kind``); ``duration`` is the real duration, for simulation only.
    ``payload`` is opaque JSON-compatible data handed to the agent.
    ``timeout`` is the longest an attempt may run, in seconds (``None``: no
    deadline); an attempt past it is revoked and counts as failed ("deadline
    exceeded"). ``retry_backoff`` delays each retry (``None``: retry at once).
    """

    id: str
    depends_on: tuple[str, ...] = ()
    priority: int = DEFAULT_PRIORITY
    estimate: float | None = None
    kind: str = ""
    branch: str = ""
    requires: frozenset[str] = frozenset()
    payload: Any = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    duration: float | None = None
    timeout: float | None = None
    retry_backoff: RetryBackoff | None = None


@dataclass(frozen=True, slots=True)
class TaskTiming:
    """What the leader's scheduler knows of a task's clock (wall seconds):
    the running attempt's deadline, when a failed attempt is retried, and
    the last failed attempt's reason ("deadline exceeded", ...; "" none);
    and the running attempt's last reported progress (0..1, with a note)."""

    deadline_at: float | None = None
    retry_at: float | None = None
    last_failure: str = ""
    progress: float | None = None
    progress_note: str = ""


@dataclass(frozen=True, slots=True)
class TaskProgress:
    """A running task's last progress report (``Task.progress`` in the agent
    SDK), under the claim with ``fence``: ``fraction`` in 0..1 and a note."""

    fence: int
    fraction: float
    note: str


@dataclass(frozen=True, slots=True)
class AgentGroup:
    """Simulation-only agent description from a project file's ``agents``."""

    count: int = 1
    capabilities: frozenset[str] = frozenset()
    slots: int = 1


@dataclass(frozen=True, slots=True)
class ProjectSpec:
    """A validated DAG of tasks, in file order (``tasks`` is topologically valid
    as a set; order is not significant)."""

    id: str
    tasks: tuple[TaskSpec, ...]
    agents: tuple[AgentGroup, ...] = ()
    source: str = ""  # file the spec came from, for error messages

    def task_map(self) -> dict[str, TaskSpec]:
        return {t.id: t for t in self.tasks}


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """A registered agent: what it can run and how much at once."""

    id: str
    capabilities: frozenset[str] = frozenset()
    slots: int = 1
    prefetch: int = 1
    lease_id: int = 0
    pull: bool = False  # given a task only when it asks (docs/agent.md, "Pull mode")
    chains: bool = False  # honours Assign.after (docs/agent.md, "Chained tasks")


@dataclass(frozen=True, slots=True)
class TaskKey:
    """Identifies a task across projects."""

    project: str
    task: str

    def __str__(self) -> str:
        return f"{self.project}/{self.task}"


@dataclass(frozen=True, slots=True)
class Claim:
    """``claims/<pid>/<tid>``: the task belongs to ``agent`` (on its lease).

    ``fence`` is the claim key's create revision in etcd (0 before it exists):
    the token a completion must present. ``started`` is set only by the
    leader confirming the start; stealing moves only claims not started.
    ``after``: a chained claim (created started while these dependencies,
    running on the same agent, had not succeeded; docs/scheduling.md,
    "Chains run back to back"): the agent runs it once they succeed there.
    """

    key: TaskKey
    agent: str
    attempt: int
    started: bool = False
    fence: int = 0
    mod_revision: int = 0
    lease_id: int = 0
    after: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TaskResult:
    """``results/<pid>/<tid>``: the committed outcome of a task."""

    key: TaskKey
    state: TaskState  # SUCCEEDED, FAILED or CANCELLED
    agent: str = ""
    attempt: int = 0
    reason: str = ""
    duration: float = 0.0
    output_tail: str = ""
    finished_at: float = 0.0
    result_json: str = ""  # the task's JSON result, compact (empty: none); docs/etcd-layer.md


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    """Who leads: candidate id, advertised address, fencing term."""

    id: str
    address: str
    term: int


@dataclass(frozen=True, slots=True)
class TaskRef:
    """A task as an agent holds it: its key, the claim's fence and the attempt.

    The fence (the claim key's create revision) is what proves ownership; two
    refs of one task with different fences are two different claims.
    """

    key: TaskKey
    fence: int
    attempt: int

    @classmethod
    def of(cls, claim: Claim) -> TaskRef:
        return cls(claim.key, claim.fence, claim.attempt)
