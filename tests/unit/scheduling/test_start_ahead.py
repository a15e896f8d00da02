"""Short tasks started ahead (``SchedulerConfig.start_ahead``): an agent busy
only with short work is given the next short task started, so it runs it the
moment its slot frees, without a round trip to the leader."""

from __future__ import annotations

from workhive.coordinator.model import AgentInfo, ProjectSpec, TaskKey, TaskSpec
from workhive.coordinator.scheduling import (
    AgentJoined,
    AssignTask,
    ProjectSubmitted,
    SchedulerConfig,
    SchedulerState,
    TaskSucceeded,
)
from workhive.coordinator.scheduling.simulator import SimConfig, simulate


def K(t: str) -> TaskKey:
    return TaskKey("p", t)


def T(tid: str, est: float = 0.01, **kw: object) -> TaskSpec:
    return TaskSpec(id=tid, estimate=est, **kw)  # type: ignore[arg-type]


def submit(*tasks: TaskSpec, prefetch: int = 1, **cfg: object) -> list[object]:
    s = SchedulerState(SchedulerConfig(policy="greedy", **cfg))  # type: ignore[arg-type]
    a = AgentInfo(id="a", slots=1, prefetch=prefetch)
    return list(s.handle(AgentJoined(a, 0), ProjectSubmitted(ProjectSpec("p", tasks), 0)))


def test_a_short_task_behind_short_work_is_started_ahead() -> None:
    assert submit(T("x"), T("y")) == [
        AssignTask(K("x"), "a", 1, True),
        AssignTask(K("y"), "a", 1, True),
    ]


def test_at_most_start_ahead_tasks_beyond_the_slots_then_the_queue() -> None:
    cmds = submit(T("x"), T("y"), T("z"), T("w"), start_ahead_tasks=2)
    assert cmds == [
        AssignTask(K("x"), "a", 1, True),
        AssignTask(K("y"), "a", 1, True),
        AssignTask(K("z"), "a", 1, True),
        AssignTask(K("w"), "a", 1, False),
    ]


def test_nothing_is_started_ahead_behind_a_long_task() -> None:
    assert submit(T("long", est=5.0), T("y")) == [
        AssignTask(K("long"), "a", 1, True),
        AssignTask(K("y"), "a", 1, False),
    ]


def test_a_long_task_is_never_started_ahead() -> None:
    assert submit(T("x"), T("long", est=5.0)) == [
        AssignTask(K("x"), "a", 1, True),
        AssignTask(K("long"), "a", 1, False),
    ]


def test_a_task_with_a_deadline_is_not_started_ahead() -> None:
    assert submit(T("x"), T("y", timeout=30.0)) == [
        AssignTask(K("x"), "a", 1, True),
        AssignTask(K("y"), "a", 1, False),
    ]


def test_zero_disables_it() -> None:
    assert submit(T("x"), T("y"), start_ahead=0) == [
        AssignTask(K("x"), "a", 1, True),
        AssignTask(K("y"), "a", 1, False),
    ]


def test_nothing_more_is_started_behind_a_task_that_overruns() -> None:
    s = SchedulerState(SchedulerConfig(policy="greedy", start_ahead_tasks=1))
    a = AgentInfo(id="a", slots=1, prefetch=0)
    tasks = (T("x"), T("y"), T("z"))
    assert s.handle(AgentJoined(a, 0), ProjectSubmitted(ProjectSpec("p", tasks), 0)) == [
        AssignTask(K("x"), "a", 1, True),
        AssignTask(K("y"), "a", 1, True),
    ]
    # x ran 2 s instead of 10 ms; y, still waiting behind it, overruns too
    # by the time x ends: z goes on no agent busy with overrunning work.
    cmds = s.handle(TaskSucceeded(K("x"), "a", 2.0, 2.0))
    assert AssignTask(K("z"), "a", 1, True) not in cmds


def _lagging(lag: float) -> SchedulerState:
    """Agent ``a`` has run a 30-task chain of 10 ms tasks whose successes each
    reached the scheduler ``lag`` s after it started them (a busy leader, a
    thousand agents), and is now running ``x`` (10 ms), started at 100 s."""
    s = SchedulerState(SchedulerConfig(policy="greedy"))
    chain = tuple(T(f"c{i}", depends_on=(f"c{i - 1}",) if i else ()) for i in range(30))
    s.handle(AgentJoined(AgentInfo(id="a", slots=1, prefetch=0), 0))
    s.handle(ProjectSubmitted(ProjectSpec("p", chain), 0))
    for i in range(30):
        s.handle(TaskSucceeded(K(f"c{i}"), "a", 0.01, (i + 1) * lag))
    x = ProjectSpec("q", (T("x"),))
    assert s.handle(ProjectSubmitted(x, 100.0)) == [AssignTask(TaskKey("q", "x"), "a", 1, True)]
    return s


def test_the_time_a_start_and_a_completion_travel_is_not_counted_as_overrunning() -> None:
    # x, 0.2 s into its run as the scheduler sees it, is where the chain's tasks
    # were when their successes came: y is started ahead behind it
    s = _lagging(0.3)
    cmds = s.handle(ProjectSubmitted(ProjectSpec("r", (T("y"),)), 100.2))
    assert cmds == [AssignTask(TaskKey("r", "y"), "a", 1, True)]


def test_without_that_lag_the_same_task_counts_as_overrunning() -> None:
    s = _lagging(0.01)
    assert s.handle(ProjectSubmitted(ProjectSpec("r", (T("y"),)), 100.2)) == []


def test_a_task_running_well_past_the_lag_still_stops_starting_ahead() -> None:
    s = _lagging(0.3)
    assert s.handle(ProjectSubmitted(ProjectSpec("r", (T("y"),)), 102.0)) == []


def test_a_task_started_ahead_is_no_lag_sample_for_its_wait_behind_a_long_one() -> None:
    s = SchedulerState(SchedulerConfig(policy="greedy"))
    s.handle(AgentJoined(AgentInfo(id="a", slots=1, prefetch=0), 0))
    assert s.handle(ProjectSubmitted(ProjectSpec("p", (T("x"), T("y"))), 0)) == [
        AssignTask(K("x"), "a", 1, True),
        AssignTask(K("y"), "a", 1, True),
    ]
    # x ran 5 s; y, started ahead, waited for it and then ran 10 ms: that
    # wait is no dispatch lag, so a task 0.2 s into its run still overruns
    s.handle(TaskSucceeded(K("x"), "a", 5.0, 5.0))
    s.handle(TaskSucceeded(K("y"), "a", 0.01, 5.01))
    assert s.handle(ProjectSubmitted(ProjectSpec("q", (T("x2"),)), 10.0)) == [
        AssignTask(TaskKey("q", "x2"), "a", 1, True)
    ]
    assert s.handle(ProjectSubmitted(ProjectSpec("r", (T("y2"),)), 10.2)) == []


def test_the_simulator_runs_started_ahead_tasks_one_slot_at_a_time() -> None:
    spec = ProjectSpec("p", tuple(T(f"t{i}") for i in range(10)))
    res = simulate(spec, SimConfig(agents=1, slots=1, prefetch=1))
    assert abs(res.makespan - 0.1) < 1e-9
