"""A plan is made for a set of agents: a newcomer drops it and asks for a new one."""

from __future__ import annotations

from workhive.coordinator.model import AgentInfo, ProjectSpec, TaskSpec
from workhive.coordinator.scheduling import (
    AgentJoined,
    PlannerConfig,
    ProjectSubmitted,
    RequestReplan,
    SchedulerState,
    plan_project,
)


def test_a_new_agent_drops_the_plan_and_requests_a_replan() -> None:
    spec = ProjectSpec(id="p", tasks=tuple(TaskSpec(id=f"t{i}", estimate=1.0) for i in range(6)))
    first = AgentInfo(id="a1")
    plan = plan_project(spec, [first], config=PlannerConfig(time_box=0))
    assert plan is not None
    state = SchedulerState()
    state.handle(AgentJoined(first, 0.0), ProjectSubmitted(spec, 0.0, plan=plan))
    assert state.plan("p") is not None
    commands = state.handle(AgentJoined(AgentInfo(id="a2"), 1.0))
    assert state.plan("p") is None
    assert [c for c in commands if isinstance(c, RequestReplan)] == [
        RequestReplan("p", "agent a2 joined")
    ]
