"""What a dispatch step looks at must not grow with the work queued on busy
agents (at 1,000 agents a step used to walk every queued task, ~1,000, to
find one worth moving to a free slot, and the leader spent milliseconds per
completion on it)."""

from __future__ import annotations

import pytest

from workhive.coordinator.model import AgentInfo, ProjectSpec, TaskSpec
from workhive.coordinator.scheduling import (
    AgentJoined,
    AssignTask,
    ProjectSubmitted,
    SchedulerConfig,
    SchedulerState,
    TaskSucceeded,
)
from workhive.coordinator.scheduling.ready_queues import ReadyQueues

AGENTS = 50


def _saturated() -> tuple[SchedulerState, AssignTask]:
    """50 one-slot agents, each running one 10 s task with one queued behind
    it, and 50 more tasks ready; also one of the running tasks."""
    s = SchedulerState(SchedulerConfig(policy="default"))
    s.handle(*[AgentJoined(AgentInfo(id=f"a{i}", slots=1, prefetch=1), 0) for i in range(AGENTS)])
    tasks = tuple(TaskSpec(id=f"t{i}", estimate=10.0) for i in range(3 * AGENTS))
    cmds = s.handle(ProjectSubmitted(ProjectSpec("p", tasks), 0))
    assert len(s.queued("a0")) == 1
    return s, next(c for c in cmds if isinstance(c, AssignTask) and c.start_now)


def _count_top_queued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = ReadyQueues.top_queued

    def counted(self: ReadyQueues) -> object:
        calls[0] += 1
        return real(self)

    monkeypatch.setattr(ReadyQueues, "top_queued", counted)
    return calls


def test_a_step_with_no_free_slot_looks_at_no_queued_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s, run = _saturated()
    calls = _count_top_queued(monkeypatch)
    # the slot frees and its agent's own queued task takes it: no slot is free
    s.handle(TaskSucceeded(run.key, run.agent_id, 10.0, 10.0))
    assert calls[0] <= 1  # the freed slot's own choice, not a walk of the queue
