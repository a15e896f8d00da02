"""The scheduler state machine: events in, exact command lists out."""

from __future__ import annotations

from workhive.coordinator.model import (
    AgentInfo,
    Claim,
    ProjectSpec,
    TaskKey,
    TaskResult,
    TaskSpec,
    TaskState,
)
from workhive.coordinator.scheduling import (
    AgentJoined,
    AgentLeft,
    AssignRejected,
    AssignTask,
    CancelTask,
    ClaimLost,
    MarkTaskFailed,
    PlannerConfig,
    ProjectCancelled,
    ProjectFinished,
    ProjectSubmitted,
    RequestReplan,
    RequeueTask,
    SchedulerConfig,
    SchedulerState,
    StartTask,
    StateRestored,
    StealRejected,
    StealTask,
    StealTick,
    TaskFailed,
    TaskStarted,
    TaskSucceeded,
    plan_project,
)


def K(t: str, p: str = "p") -> TaskKey:
    return TaskKey(p, t)


def spec(*tasks: TaskSpec, pid: str = "p") -> ProjectSpec:
    return ProjectSpec(id=pid, tasks=tasks)


def T(tid: str, *deps: str, est: float = 1.0, **kw: object) -> TaskSpec:
    return TaskSpec(id=tid, depends_on=deps, estimate=est, **kw)  # type: ignore[arg-type]


def agent(aid: str, slots: int = 1, prefetch: int = 1, caps: tuple[str, ...] = ()) -> AgentInfo:
    return AgentInfo(id=aid, slots=slots, prefetch=prefetch, capabilities=frozenset(caps))


def test_ready_task_goes_to_free_slot_started_then_prefetch() -> None:
    s = SchedulerState(SchedulerConfig(policy="critical-path"))
    cmds = s.handle(
        AgentJoined(agent("a"), 0),
        ProjectSubmitted(spec(T("x", est=5), T("y", est=3), T("z", est=1)), 0),
    )
    assert cmds == [AssignTask(K("x"), "a", 1, True), AssignTask(K("y"), "a", 1, False)]
    assert s.task_state(K("x")) is TaskState.RUNNING
    assert s.task_state(K("y")) is TaskState.ASSIGNED
    assert s.task_state(K("z")) is TaskState.READY


def test_completion_starts_queued_task_and_refills_prefetch() -> None:
    s = SchedulerState(SchedulerConfig(policy="critical-path"))
    s.handle(AgentJoined(agent("a"), 0), ProjectSubmitted(spec(T("x"), T("y"), T("z")), 0))
    cmds = s.handle(TaskSucceeded(K("x"), "a", 1.0, 1.0))
    assert cmds == [StartTask(K("y"), "a", 1), AssignTask(K("z"), "a", 1, False)]


def test_dependents_become_ready_and_project_finishes() -> None:
    s = SchedulerState(SchedulerConfig(policy="critical-path"))
    s.handle(AgentJoined(agent("a", prefetch=0), 0), ProjectSubmitted(spec(T("x"), T("y", "x")), 0))
    assert s.handle(TaskSucceeded(K("x"), "a", 1, 1)) == [AssignTask(K("y"), "a", 1, True)]
    assert s.handle(TaskSucceeded(K("y"), "a", 1, 2)) == [ProjectFinished("p", "succeeded")]


def test_critical_path_first() -> None:
    s = SchedulerState(SchedulerConfig(policy="critical-path"))
    p = spec(T("short", est=1), T("long", est=1), T("tail", "long", est=10))
    cmds = s.handle(AgentJoined(agent("a", prefetch=0), 0), ProjectSubmitted(p, 0))
    assert cmds == [AssignTask(K("long"), "a", 1, True)]


def test_priority_orders_before_rank() -> None:
    s = SchedulerState(SchedulerConfig(policy="critical-path"))
    p = spec(T("long", est=9), T("urgent", est=1, priority=9))
    cmds = s.handle(AgentJoined(agent("a", prefetch=0), 0), ProjectSubmitted(p, 0))
    assert cmds == [AssignTask(K("urgent"), "a", 1, True)]


def test_capabilities_always_filter() -> None:
    s = SchedulerState(SchedulerConfig(policy="greedy"))
    p = spec(T("g", requires=frozenset({"gpu"})), T("c"))
    cmds = s.handle(
        AgentJoined(agent("cpu", prefetch=0), 0),
        AgentJoined(agent("gpu", prefetch=0, caps=("gpu",)), 0),
        ProjectSubmitted(p, 0),
    )
    assert AssignTask(K("g"), "gpu", 1, True) in cmds
    assert AssignTask(K("c"), "cpu", 1, True) in cmds


def test_balanced_picks_least_predicted_load() -> None:
    s = SchedulerState(SchedulerConfig(policy="balanced"))
    s.handle(
        AgentJoined(agent("a", slots=2, prefetch=0), 0),
        AgentJoined(agent("b", slots=2, prefetch=0), 0),
    )
    cmds = s.handle(ProjectSubmitted(spec(T("big", est=10), T("s1", est=1), T("s2", est=1)), 0))
    assert [c.agent_id for c in cmds if isinstance(c, AssignTask)] == ["a", "b", "b"]


def test_affinity_keeps_branch_on_its_agent() -> None:
    s = SchedulerState(SchedulerConfig(policy="affinity"))
    p = spec(T("b1", branch="api"), T("b2", "b1", branch="api"), T("other"))
    s.handle(AgentJoined(agent("a", prefetch=0), 0), AgentJoined(agent("b", prefetch=0), 0))
    first = s.handle(ProjectSubmitted(p, 0))
    owner = next(c.agent_id for c in first if isinstance(c, AssignTask) and c.key == K("b1"))
    other = next(c.agent_id for c in first if isinstance(c, AssignTask) and c.key == K("other"))
    s.handle(TaskSucceeded(K("other"), other, 1, 1))  # the other agent is free first
    cmds = s.handle(TaskSucceeded(K("b1"), owner, 1, 1.5))
    assert cmds[0] == AssignTask(K("b2"), owner, 1, True)


def test_retryable_failure_requeues_with_next_attempt() -> None:
    s = SchedulerState()
    s.handle(
        AgentJoined(agent("a", prefetch=0), 0), ProjectSubmitted(spec(T("x", max_attempts=2)), 0)
    )
    cmds = s.handle(TaskFailed(K("x"), "a", "exit 1", True, 1))
    assert cmds == [RequeueTask(K("x"), 2, "failed: exit 1"), AssignTask(K("x"), "a", 2, True)]
    cmds = s.handle(TaskFailed(K("x"), "a", "exit 1", True, 2))
    assert cmds == [MarkTaskFailed(K("x"), 2, "exit 1"), ProjectFinished("p", "failed")]


def test_final_failure_cancels_descendants() -> None:
    s = SchedulerState()
    p = spec(T("x"), T("y", "x"), T("z", "y"), T("free"))
    s.handle(
        AgentJoined(agent("a", prefetch=0), 0),
        AgentJoined(agent("b", prefetch=0), 0),
        ProjectSubmitted(p, 0),
    )
    cmds = s.handle(TaskFailed(K("x"), "a", "boom", False, 1))
    assert cmds[0] == MarkTaskFailed(K("x"), 1, "boom")
    assert set(cmds[1:3]) == {
        CancelTask(K("y"), "dependency x failed"),
        CancelTask(K("z"), "dependency x failed"),
    }
    assert s.task_state(K("z")) is TaskState.CANCELLED
    assert s.handle(TaskSucceeded(K("free"), "b", 1, 2)) == [ProjectFinished("p", "failed")]


def test_idle_agent_joining_takes_queued_work_from_busy_agent() -> None:
    s = SchedulerState(SchedulerConfig(policy="greedy"))
    s.handle(AgentJoined(agent("a"), 0), ProjectSubmitted(spec(T("x"), T("y")), 0))
    assert s.handle(AgentJoined(agent("b", prefetch=0), 0.5)) == [
        StealTask(K("y"), "a", "b", 1, True)
    ]


def test_queued_task_stays_when_its_agent_starts_it_sooner_than_a_move() -> None:
    s = SchedulerState(SchedulerConfig(policy="greedy", move_min_wait=0.02, start_ahead=0))
    p = spec(T("x", est=0.005), T("y", est=0.005))
    s.handle(AgentJoined(agent("a"), 0), ProjectSubmitted(p, 0))
    assert s.handle(AgentJoined(agent("b", prefetch=0), 0.001)) == []
    assert s.queued("a") == [K("y")]


def test_queued_task_moves_when_an_overdue_task_blocks_its_agent() -> None:
    s = SchedulerState(SchedulerConfig(policy="greedy", move_min_wait=0.02, start_ahead=0))
    p = spec(T("x", est=0.005), T("y", est=0.005))
    s.handle(AgentJoined(agent("a"), 0), ProjectSubmitted(p, 0))
    # x has overrun its 5 ms estimate by 1 s: a is expected to stay busy
    assert s.handle(AgentJoined(agent("b", prefetch=0), 1.005)) == [
        StealTask(K("y"), "a", "b", 1, True)
    ]


def test_agent_left_requeues_its_tasks_elsewhere() -> None:
    s = SchedulerState(SchedulerConfig(policy="greedy", steal_on_idle=False))
    s.handle(AgentJoined(agent("a"), 0), ProjectSubmitted(spec(T("x"), T("y")), 0))
    s.handle(AgentJoined(agent("b", prefetch=0), 0))
    cmds = s.handle(AgentLeft("a", 5))
    assert cmds[:2] == [
        RequeueTask(K("x"), 2, "agent a left"),  # x had started: its attempt is spent
        RequeueTask(K("y"), 1, "agent a left"),  # y was only queued
    ]
    assert AssignTask(K("x"), "b", 2, True) in cmds


def test_lost_queued_claim_is_requeued_at_the_same_attempt_even_on_the_last() -> None:
    s = SchedulerState(SchedulerConfig(policy="greedy", steal_on_idle=False))
    p = spec(T("x", max_attempts=1), T("y", max_attempts=1))
    s.handle(AgentJoined(agent("a"), 0), ProjectSubmitted(p, 0))
    assert s.queued("a") == [K("y")]
    assert s.handle(ClaimLost(K("y"), "a", 1)) == [
        RequeueTask(K("y"), 1, "claim lost"),
        AssignTask(K("y"), "a", 1, False),  # queued again, still its first attempt
    ]


def test_lost_started_claim_on_last_attempt_fails() -> None:
    s = SchedulerState()
    s.handle(
        AgentJoined(agent("a", prefetch=0), 0), ProjectSubmitted(spec(T("x", max_attempts=1)), 0)
    )
    cmds = s.handle(ClaimLost(K("x"), "a", 3))
    assert cmds[0] == MarkTaskFailed(K("x"), 1, "claim lost; attempts exhausted (1)")


def test_claim_lost_for_another_agent_is_ignored() -> None:
    s = SchedulerState()
    s.handle(AgentJoined(agent("a", prefetch=0), 0), ProjectSubmitted(spec(T("x")), 0))
    assert s.handle(ClaimLost(K("x"), "zzz", 3)) == []


def test_assign_rejected_undoes_the_optimistic_assignment() -> None:
    s = SchedulerState()
    s.handle(AgentJoined(agent("a", prefetch=0), 0), ProjectSubmitted(spec(T("x")), 0))
    cmds = s.handle(AssignRejected(K("x"), "a", 1))
    assert cmds == [AssignTask(K("x"), "a", 1, True)]  # retried at the same attempt
    assert s.metrics(1).failed_claims == 1


def test_steal_tick_moves_queued_work_to_idle_agent() -> None:
    s = SchedulerState(SchedulerConfig(policy="greedy", steal_on_idle=False))
    p = spec(*(T(f"t{i}") for i in range(10)))
    s.handle(AgentJoined(agent("a", prefetch=20), 0), ProjectSubmitted(p, 0))
    s.handle(AgentJoined(agent("b", prefetch=20), 1))
    cmds = s.handle(StealTick(5))
    steals = [c for c in cmds if isinstance(c, StealTask)]
    assert len(steals) == 4  # 9 queued vs 0: half the difference, within the batch of 5
    assert steals[0] == StealTask(K("t9"), "a", "b", 1, True)  # tail first, into b's free slot
    assert all(not c.start_now for c in steals[1:])


def test_steal_rejected_returns_task_to_victim() -> None:
    s = SchedulerState(SchedulerConfig(policy="greedy", steal_on_idle=False))
    s.handle(
        AgentJoined(agent("a", prefetch=20), 0),
        ProjectSubmitted(spec(*(T(f"t{i}") for i in range(10))), 0),
    )
    s.handle(AgentJoined(agent("b", prefetch=20), 1))
    s.handle(StealTick(5))
    s.handle(StealRejected(K("t9"), "a", "b", 5.1))
    assert s.task_agent(K("t9")) == "a"
    assert s.metrics(6).rejected_steals == 1


def test_started_tasks_never_move() -> None:
    s = SchedulerState(SchedulerConfig(policy="greedy"))
    s.handle(
        AgentJoined(agent("a", prefetch=20), 0),
        ProjectSubmitted(spec(*(T(f"t{i}") for i in range(10))), 0),
    )
    s.handle(TaskStarted(K("t0"), "a", 0.1))
    cmds = s.handle(AgentJoined(agent("b", prefetch=20), 1), StealTick(5))
    assert K("t0") not in {c.key for c in cmds if isinstance(c, StealTask)}


def test_project_cancelled_cancels_everything_unfinished() -> None:
    s = SchedulerState()
    s.handle(AgentJoined(agent("a", prefetch=0), 0), ProjectSubmitted(spec(T("x"), T("y", "x")), 0))
    cmds = s.handle(ProjectCancelled("p", "user", 1))
    assert cmds == [
        CancelTask(K("x"), "user", "a"),
        CancelTask(K("y"), "user"),
        ProjectFinished("p", "cancelled"),
    ]


def test_restore_rebuilds_claims_results_and_ready_tasks() -> None:
    p = spec(T("x"), T("y", "x"), T("z", "x"), T("w"))
    s = SchedulerState(SchedulerConfig(policy="greedy"))
    cmds = s.handle(
        StateRestored(
            projects=[p],
            claims=[
                Claim(K("y"), "a", 1, started=True, fence=10),
                Claim(K("w"), "gone", 1, fence=11),
            ],
            results=[TaskResult(K("x"), TaskState.SUCCEEDED, "a", 1)],
            agents=[agent("a", prefetch=0), agent("b", prefetch=0)],
            now=100,
        )
    )
    assert s.task_state(K("y")) is TaskState.RUNNING
    assert RequeueTask(K("w"), 1, "agent gone gone") in cmds  # w never started
    assigned = {c.key: c.agent_id for c in cmds if isinstance(c, AssignTask)}
    assert assigned == {K("w"): "b"}  # a is busy with y; greedy: requeued w was ready first
    assert s.task_state(K("z")) is TaskState.READY


def test_restore_fails_a_started_claim_of_a_gone_agent_on_its_last_attempt() -> None:
    s = SchedulerState()
    cmds = s.handle(
        StateRestored(
            projects=[spec(T("x", max_attempts=1), T("y", "x"))],
            claims=[Claim(K("x"), "gone", 1, started=True, fence=10)],
            results=[],
            agents=[agent("a", prefetch=0)],
            now=100,
        )
    )
    assert cmds[0] == MarkTaskFailed(K("x"), 1, "agent gone gone; attempts exhausted (1)")
    assert CancelTask(K("y"), "dependency x failed") in cmds
    assert ProjectFinished("p", "failed") in cmds


def test_same_events_same_commands() -> None:
    def run() -> list[object]:
        s = SchedulerState()
        out: list[object] = []
        p = spec(*(T(f"t{i}", *([f"t{i - 1}"] if i % 3 else []), est=1 + i % 4) for i in range(30)))
        out += s.handle(*(AgentJoined(agent(f"a{i}"), 0) for i in range(3)), ProjectSubmitted(p, 0))
        for i in range(30):
            a = s.task_agent(K(f"t{i}"))
            if a:
                out += s.handle(TaskSucceeded(K(f"t{i}"), a, 1, i + 1.0))
        return out

    assert run() == run()


def test_plan_is_followed_and_drift_requests_replan() -> None:
    p = spec(T("a", est=3), T("b", est=2), T("c", "a", est=2), T("d", "b", est=3))
    agents = [agent("x", prefetch=0), agent("y", prefetch=0)]
    plan = plan_project(p, agents, config=PlannerConfig(time_box=0))
    assert plan is not None and plan.makespan == 5
    s = SchedulerState()
    cmds = s.handle(*(AgentJoined(a, 0) for a in agents), ProjectSubmitted(p, 0, plan))
    assert {(c.key.task, c.agent_id) for c in cmds if isinstance(c, AssignTask)} == {
        (t, plan.tasks[t].agent_id) for t in ("a", "b")
    }
    cmds = s.handle(TaskSucceeded(K("b"), plan.tasks["b"].agent_id, 4.0, 4.0))  # planned 2 s
    assert RequestReplan("p", "task b took 4s, planned 2s") in cmds
    assert s.plan("p") is None


def test_duration_model_learns_per_kind() -> None:
    s = SchedulerState()
    p = spec(TaskSpec(id="a", kind="build"), TaskSpec(id="b", kind="build", depends_on=("a",)))
    s.handle(AgentJoined(agent("x", prefetch=0), 0), ProjectSubmitted(p, 0))
    s.handle(TaskSucceeded(K("a"), "x", 20.0, 20.0))
    assert s.durations.predict(p.tasks[1]) == 20.0
