"""A plan is made for a set of agents and for the predicted durations: a
newcomer, or a task already running well past its planned duration, drops it
and asks for a new one."""

from __future__ import annotations

from workhive.coordinator.model import AgentInfo, ProjectSpec, TaskKey, TaskSpec
from workhive.coordinator.scheduling import (
    AgentJoined,
    AssignTask,
    PlannerConfig,
    ProjectSubmitted,
    RequestReplan,
    SchedulerState,
    StealTick,
    TaskSucceeded,
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


def test_a_task_running_past_its_planned_duration_drops_the_plan_while_it_runs() -> None:
    tasks = (TaskSpec(id="a", estimate=4.0), TaskSpec(id="b", estimate=2.0))
    spec = ProjectSpec(id="p", tasks=(*tasks, TaskSpec(id="c", estimate=2.0)))
    agents = [AgentInfo(id="x", prefetch=0), AgentInfo(id="y", prefetch=0)]
    plan = plan_project(spec, agents, config=PlannerConfig(time_box=0))
    assert plan is not None and plan.makespan == 4
    shared = next(aid for aid, ids in plan.sequences.items() if len(ids) == 2)
    other = next(aid for aid in plan.sequences if aid != shared)
    first, behind = plan.sequences[shared]
    state = SchedulerState()
    state.handle(*(AgentJoined(a, 0.0) for a in agents), ProjectSubmitted(spec, 0.0, plan=plan))
    # the first task on the shared agent overruns (planned 2 s, tolerance 10 %)
    assert state.handle(StealTick(2.1)) == []
    assert state.handle(StealTick(2.3)) == [
        RequestReplan("p", f"task {first} running 2.3s, planned 2s")
    ]
    # the task planned behind it no longer waits for it: the first free slot takes it
    assert state.handle(TaskSucceeded(TaskKey("p", "a"), other, 4.0, 4.0)) == [
        AssignTask(TaskKey("p", behind), other, 1, True)
    ]
