"""workhive's scheduling core: pure, synchronous, free of I/O.

The leader's driver and the simulator both feed ``SchedulerState.handle``
with events and execute the commands it returns. See docs/scheduling.md.
"""

from workhive.coordinator.scheduling.config import POLICIES, SchedulerConfig
from workhive.coordinator.scheduling.durations import DurationModel
from workhive.coordinator.scheduling.events import (
    AgentJoined,
    AgentLeft,
    AssignRejected,
    AssignTask,
    CancelTask,
    ClaimLost,
    ClaimUnanswered,
    ClaimWanted,
    ClaimWithdrawn,
    Command,
    DeadlineTick,
    Event,
    MarkTaskFailed,
    PlanUpdated,
    ProjectCancelled,
    ProjectDeleted,
    ProjectFinished,
    ProjectSubmitted,
    RequestReplan,
    RequeueTask,
    RevokeTask,
    StartRejected,
    StartTask,
    StateRestored,
    StealRejected,
    StealTask,
    StealTick,
    TaskFailed,
    TasksAdded,
    TaskStarted,
    TaskSucceeded,
)
from workhive.coordinator.scheduling.graph import GraphAnalysis, analyse
from workhive.coordinator.scheduling.growth import Addition, check_addition, extend_analysis
from workhive.coordinator.scheduling.metrics import (
    SchedulerMetrics,
    load_imbalance,
    lock_contention_rate,
    parallelization_efficiency,
)
from workhive.coordinator.scheduling.planner import (
    PlannerConfig,
    list_schedule,
    plan_project,
    starts_at_once,
)
from workhive.coordinator.scheduling.planner_types import Plan, PlannedTask
from workhive.coordinator.scheduling.retry_policy import backoff_delay
from workhive.coordinator.scheduling.simulator import SimConfig, SimResult, simulate, skewed_start
from workhive.coordinator.scheduling.state import SchedulerState
from workhive.coordinator.scheduling.stealing import AgentQueue, QueuedTask, StealMove, plan_steals
from workhive.coordinator.task_schema import ProjectError

__all__ = [
    "POLICIES",
    "Addition",
    "AgentJoined",
    "AgentLeft",
    "AgentQueue",
    "AssignRejected",
    "AssignTask",
    "CancelTask",
    "ClaimLost",
    "ClaimUnanswered",
    "ClaimWanted",
    "ClaimWithdrawn",
    "Command",
    "DeadlineTick",
    "DurationModel",
    "Event",
    "GraphAnalysis",
    "MarkTaskFailed",
    "Plan",
    "PlanUpdated",
    "PlannedTask",
    "PlannerConfig",
    "ProjectCancelled",
    "ProjectDeleted",
    "ProjectError",
    "ProjectFinished",
    "ProjectSubmitted",
    "QueuedTask",
    "RequestReplan",
    "RequeueTask",
    "RevokeTask",
    "SchedulerConfig",
    "SchedulerMetrics",
    "SchedulerState",
    "SimConfig",
    "SimResult",
    "StartRejected",
    "StartTask",
    "StateRestored",
    "StealMove",
    "StealRejected",
    "StealTask",
    "StealTick",
    "TaskFailed",
    "TaskStarted",
    "TaskSucceeded",
    "TasksAdded",
    "analyse",
    "backoff_delay",
    "check_addition",
    "extend_analysis",
    "list_schedule",
    "load_imbalance",
    "lock_contention_rate",
    "parallelization_efficiency",
    "plan_project",
    "plan_steals",
    "simulate",
    "skewed_start",
    "starts_at_once",
]
