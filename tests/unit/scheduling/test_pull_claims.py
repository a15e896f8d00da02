"""Pull claims in the scheduler: an open request is a free slot; a request
whose wait ended unanswered is answered empty (docs/scheduling.md, "Pull claims")."""

from __future__ import annotations

from workhive.coordinator.model import AgentInfo, ProjectSpec, TaskKey, TaskSpec, TaskState
from workhive.coordinator.scheduling import (
    AgentJoined,
    AssignRejected,
    AssignTask,
    ClaimUnanswered,
    ClaimWanted,
    ClaimWithdrawn,
    ProjectSubmitted,
    SchedulerConfig,
    SchedulerState,
    TaskFailed,
    TaskStarted,
)

PULL = AgentInfo("puller", slots=4, prefetch=0, pull=True)


def _state(*tasks: TaskSpec) -> SchedulerState:
    s = SchedulerState(SchedulerConfig(policy="critical-path"))
    s.handle(AgentJoined(PULL, 0.0), ProjectSubmitted(ProjectSpec("p", tasks), 0.0))
    return s


def _assigned(cmds: list[object]) -> list[str]:
    return [c.key.task for c in cmds if isinstance(c, AssignTask)]


def test_a_pull_agent_gets_nothing_until_it_asks() -> None:
    s = _state(TaskSpec("a"))
    assert s.task_state(TaskKey("p", "a")) is TaskState.READY


def test_one_request_is_answered_with_one_task_the_most_urgent() -> None:
    s = _state(TaskSpec("short", estimate=1.0), TaskSpec("long", estimate=9.0))
    cmds = s.handle(ClaimWanted("puller", 1, 1.0))
    assert _assigned(cmds) == ["long"]
    assert all(c.start_now for c in cmds if isinstance(c, AssignTask))


def test_a_request_whose_wait_ends_unanswered_is_answered_empty() -> None:
    s = _state(TaskSpec("a", requires=frozenset({"gpu"})))
    assert _assigned(s.handle(ClaimWanted("puller", 7, 1.0))) == []
    assert s.handle(ClaimWithdrawn("puller", 7, 2.0)) == [ClaimUnanswered("puller", 7)]


def test_a_request_already_answered_is_not_answered_again() -> None:
    s = _state(TaskSpec("a"))
    s.handle(ClaimWanted("puller", 1, 1.0))
    assert s.handle(ClaimWithdrawn("puller", 1, 2.0)) == []


def test_a_rejected_claim_reopens_the_request_it_answered() -> None:
    s = _state(TaskSpec("a"), TaskSpec("b"))
    first = _assigned(s.handle(ClaimWanted("puller", 1, 1.0)))
    cmds = s.handle(AssignRejected(TaskKey("p", first[0]), "puller", 1.5))
    assert len(_assigned(cmds)) == 1


def test_a_released_task_is_ready_again_at_the_same_attempt() -> None:
    s = _state(TaskSpec("a"))
    s.handle(ClaimWanted("puller", 1, 1.0))
    s.handle(TaskStarted(TaskKey("p", "a"), "puller", 1.1))
    before = s.task_attempt(TaskKey("p", "a"))
    s.handle(TaskFailed(TaskKey("p", "a"), "puller", "later", True, 2.0, spent=False))
    assert s.task_state(TaskKey("p", "a")) is TaskState.READY
    assert s.task_attempt(TaskKey("p", "a")) == before
