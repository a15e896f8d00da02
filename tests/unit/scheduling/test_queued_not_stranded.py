"""A task in a prefetch queue is never stranded there (issue 18): when its own
agent's freed slot goes to a more urgent ready task, the task stays queued
behind that one, and the next slot that frees elsewhere takes it before any
less urgent ready task."""

from __future__ import annotations

from workhive.coordinator.model import AgentInfo, ProjectSpec, TaskKey, TaskSpec, TaskState
from workhive.coordinator.scheduling import (
    AgentJoined,
    AssignTask,
    ProjectSubmitted,
    SchedulerConfig,
    SchedulerState,
    StealTask,
    TaskSucceeded,
)


def K(t: str) -> TaskKey:
    return TaskKey("p", t)


def _state() -> SchedulerState:
    """Agents A and B (one slot, prefetch 1). ``a`` (10 s, then ``r``: 100 s)
    runs on A, ``b`` (20 s, then ``z``: 1 s) on B, and ``q`` (5 s) waits in
    A's prefetch queue."""
    tasks = (
        TaskSpec(id="a", estimate=10.0),
        TaskSpec(id="b", estimate=20.0),
        TaskSpec(id="q", estimate=5.0),
        TaskSpec(id="r", estimate=100.0, depends_on=("a",)),
        TaskSpec(id="z", estimate=1.0, depends_on=("b",)),
    )
    s = SchedulerState(SchedulerConfig(policy="default"))
    cmds = s.handle(
        AgentJoined(AgentInfo(id="A", slots=1, prefetch=1), 0.0),
        AgentJoined(AgentInfo(id="B", slots=1, prefetch=1), 0.0),
        ProjectSubmitted(ProjectSpec("p", tasks), 0.0),
    )
    assert cmds == [
        AssignTask(K("a"), "A", 1, True),
        AssignTask(K("b"), "B", 1, True),
        AssignTask(K("q"), "A", 1, False),
    ]
    return s


def test_a_freed_slot_goes_to_a_more_urgent_ready_task_before_its_own_queue() -> None:
    s = _state()
    # r (rank 100) is more urgent than q (rank 5): A runs r, q stays queued on A
    assert s.handle(TaskSucceeded(K("a"), "A", 10.0, 10.0)) == [AssignTask(K("r"), "A", 1, True)]
    assert s.queued("A") == [K("q")]


def test_a_task_queued_behind_such_a_task_moves_to_the_next_slot_that_frees() -> None:
    s = _state()
    s.handle(TaskSucceeded(K("a"), "A", 10.0, 10.0))
    # B frees at 20 s: q (rank 5, waiting 90 s more on A) goes before z (rank 1)
    cmds = s.handle(TaskSucceeded(K("b"), "B", 20.0, 20.0))
    assert cmds[0] == StealTask(K("q"), "A", "B", 1, True)
    assert s.task_state(K("q")) is TaskState.RUNNING
    assert s.task_state(K("z")) is not TaskState.RUNNING
