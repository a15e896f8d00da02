"""Events into and commands out of ``SchedulerState.handle`` (frozen dataclasses).

Events report facts (a project arrived, an agent joined or left, an etcd
transaction failed, a task finished...). Commands ask the driver to perform one
fenced etcd transaction each (or one gRPC push); the state machine has already
applied them optimistically and expects a ``*Rejected`` event if one fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from workhive.coordinator.model import AgentInfo, Claim, ProjectSpec, TaskKey, TaskResult
from workhive.coordinator.scheduling.deadlines import DeadlineTick, RevokeTask
from workhive.coordinator.scheduling.growth import Addition
from workhive.coordinator.scheduling.planner_types import Plan

__all__ = [
    "AgentJoined",
    "AgentLeft",
    "AssignRejected",
    "AssignTask",
    "CancelTask",
    "ClaimLost",
    "ClaimUnanswered",
    "ClaimWanted",
    "ClaimWithdrawn",
    "Command",
    "DeadlineTick",
    "Event",
    "MarkTaskFailed",
    "PlanUpdated",
    "ProjectCancelled",
    "ProjectDeleted",
    "ProjectFinished",
    "ProjectSubmitted",
    "RequestReplan",
    "RequeueTask",
    "RevokeTask",
    "StartRejected",
    "StartTask",
    "StateRestored",
    "StealRejected",
    "StealTask",
    "StealTick",
    "TaskFailed",
    "TaskStarted",
    "TaskSucceeded",
    "TasksAdded",
]

# ----------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class ProjectSubmitted:
    """A validated project was stored; ``plan`` (optional) from ``plan_project``."""

    spec: ProjectSpec
    now: float
    plan: Plan | None = None


@dataclass(frozen=True, slots=True)
class PlanUpdated:
    """A (re)plan computed by the driver off the event loop; ``None`` clears it."""

    project_id: str
    plan: Plan | None
    now: float


@dataclass(frozen=True, slots=True)
class AgentJoined:
    """An agent registered (or re-registered with new capabilities/slots)."""

    agent: AgentInfo
    now: float


@dataclass(frozen=True, slots=True)
class AgentLeft:
    """An agent's lease expired or it deregistered: its claims are gone."""

    agent_id: str
    now: float


@dataclass(frozen=True, slots=True)
class TaskStarted:
    """The start of ``key`` on ``agent_id`` is committed (claim marked started)."""

    key: TaskKey
    agent_id: str
    now: float


@dataclass(frozen=True, slots=True)
class TaskSucceeded:
    """A success was committed (claim deleted, result written)."""

    key: TaskKey
    agent_id: str
    duration: float
    now: float


@dataclass(frozen=True, slots=True)
class TaskFailed:
    """A failure was committed (claim deleted). ``retryable``: may run again."""

    key: TaskKey
    agent_id: str
    reason: str
    retryable: bool
    now: float
    spent: bool = True  # False: handed back (released): ready again at the same attempt


@dataclass(frozen=True, slots=True)
class ClaimLost:
    """The claim vanished (lease expired, deleted): requeue (attempt + 1 if it had started)."""

    key: TaskKey
    agent_id: str
    now: float


@dataclass(frozen=True, slots=True)
class AssignRejected:
    """The claim-create transaction of an ``AssignTask`` failed its compare."""

    key: TaskKey
    agent_id: str
    now: float


@dataclass(frozen=True, slots=True)
class StartRejected:
    """The mark-started CAS of a ``StartTask`` failed (claim changed/vanished).

    The task goes back to the head of the agent's queue unless a ``ClaimLost``
    or ``TaskStarted`` says otherwise."""

    key: TaskKey
    agent_id: str
    now: float


@dataclass(frozen=True, slots=True)
class StealRejected:
    """The move CAS of a ``StealTask`` failed: the task stays with ``from_agent``."""

    key: TaskKey
    from_agent: str
    to_agent: str
    now: float


@dataclass(frozen=True, slots=True)
class StealTick:
    """Periodic stealing check (every ``SchedulerConfig.steal_interval``)."""

    now: float


@dataclass(frozen=True, slots=True)
class TasksAdded:
    """Tasks were added to a running project (committed; validated by
    ``growth.check_addition``): ranks grow incrementally, an active plan is
    dropped, a finished project reopens."""

    addition: Addition
    now: float


@dataclass(frozen=True, slots=True)
class ClaimWanted:
    """A pull agent asks for one task (request ``seq``): its next free slot
    takes the best ready task for it, under the active policy."""

    agent_id: str
    seq: int
    now: float


@dataclass(frozen=True, slots=True)
class ClaimWithdrawn:
    """The wait of request ``seq`` ended: unanswered, it is answered empty
    (``ClaimUnanswered``)."""

    agent_id: str
    seq: int
    now: float


@dataclass(frozen=True, slots=True)
class ProjectCancelled:
    """The user cancelled a project: every unfinished task is cancelled."""

    project_id: str
    reason: str
    now: float


@dataclass(frozen=True, slots=True)
class ProjectDeleted:
    """A finished project was deleted from etcd: forget it (no commands)."""

    project_id: str
    now: float


@dataclass(frozen=True, slots=True)
class StateRestored:
    """Replace all state with what a new leader read from etcd at one revision.

    ``attempts`` holds the current attempt of tasks without a claim (from the
    task records); tasks absent default to attempt 0 (never assigned).
    Claims of agents not in ``agents`` are treated as lost.
    """

    projects: Sequence[ProjectSpec]
    claims: Sequence[Claim]
    results: Sequence[TaskResult]
    agents: Sequence[AgentInfo]
    now: float
    attempts: Mapping[TaskKey, int] = field(default_factory=dict)
    plans: Mapping[str, Plan] = field(default_factory=dict)


Event = (
    ProjectSubmitted
    | TasksAdded
    | ClaimWanted
    | ClaimWithdrawn
    | PlanUpdated
    | AgentJoined
    | AgentLeft
    | TaskStarted
    | TaskSucceeded
    | TaskFailed
    | ClaimLost
    | AssignRejected
    | StartRejected
    | StealRejected
    | StealTick
    | DeadlineTick
    | ProjectCancelled
    | ProjectDeleted
    | StateRestored
)

# --------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class AssignTask:
    """Create ``claims/<key>`` for ``agent_id`` (absent + task ready), on its lease.

    ``start_now``: the agent has a free slot, create the claim already started;
    otherwise it joins the agent's prefetch queue. ``after``: a chained task
    (``SchedulerConfig.chain_ahead``): created started while these
    dependencies (task ids of its project, all running on ``agent_id``) have
    not succeeded yet; the agent runs it once they succeed there."""

    key: TaskKey
    agent_id: str
    attempt: int
    start_now: bool
    after: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StartTask:
    """Mark the queued claim started (CAS) and tell the agent to run it."""

    key: TaskKey
    agent_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class StealTask:
    """Move the unstarted claim from ``from_agent`` to ``to_agent`` (CAS);
    ``start_now`` as in ``AssignTask``."""

    key: TaskKey
    from_agent: str
    to_agent: str
    attempt: int
    start_now: bool


@dataclass(frozen=True, slots=True)
class RequeueTask:
    """Record the task ready again with ``attempt`` (its claim is gone)."""

    key: TaskKey
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class MarkTaskFailed:
    """Write a FAILED result (attempts exhausted or not retryable)."""

    key: TaskKey
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class CancelTask:
    """Write a CANCELLED result; delete the claim of ``agent_id`` if set and
    tell that agent to drop the task."""

    key: TaskKey
    reason: str
    agent_id: str | None = None


@dataclass(frozen=True, slots=True)
class ProjectFinished:
    """Every task is terminal; ``outcome`` is succeeded, failed or cancelled."""

    project_id: str
    outcome: str


@dataclass(frozen=True, slots=True)
class RequestReplan:
    """Observed durations drifted from the plan (or its agents changed): the
    plan was dropped (the heuristic policy applies) and a new plan is welcome
    via ``PlanUpdated``."""

    project_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ClaimUnanswered:
    """Tell the pull agent that its request ``seq`` found no task in its wait."""

    agent_id: str
    seq: int


Command = (
    AssignTask
    | ClaimUnanswered
    | StartTask
    | StealTask
    | RequeueTask
    | RevokeTask
    | MarkTaskFailed
    | CancelTask
    | ProjectFinished
    | RequestReplan
)
