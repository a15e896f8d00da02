"""Rules of issue 18: effective priority, the tail rule, scarce capabilities."""

from __future__ import annotations

from workhive.coordinator.model import AgentInfo, ProjectSpec, TaskKey, TaskSpec
from workhive.coordinator.scheduling import (
    AgentJoined,
    AssignTask,
    ProjectSubmitted,
    SchedulerConfig,
    SchedulerState,
    StealTask,
    TaskSucceeded,
)
from workhive.coordinator.scheduling.durations import DurationModel
from workhive.coordinator.scheduling.estimates import EstimateErrors, margin
from workhive.coordinator.scheduling.priorities import effective_priorities, holds_the_end
from workhive.coordinator.scheduling.scarcity import Needs

GPU = frozenset({"gpu"})


def K(t: str) -> TaskKey:
    return TaskKey("p", t)


def T(tid: str, *deps: str, est: float = 1.0, **kw: object) -> TaskSpec:
    return TaskSpec(id=tid, depends_on=deps, estimate=est, **kw)  # type: ignore[arg-type]


def agent(
    aid: str, slots: int = 1, prefetch: int = 0, caps: frozenset[str] = frozenset()
) -> AgentInfo:
    return AgentInfo(id=aid, slots=slots, prefetch=prefetch, capabilities=caps)


def submit(policy: str, agents: list[AgentInfo], *tasks: TaskSpec) -> list[object]:
    s = SchedulerState(SchedulerConfig(policy=policy))
    evs = [AgentJoined(a, 0) for a in agents]
    return list(s.handle(*evs, ProjectSubmitted(ProjectSpec(id="p", tasks=tasks), 0)))


def test_effective_priority_is_the_max_over_descendants() -> None:
    # a -> b -> c(9); d(2) alone
    children = [[1], [2], [], []]
    assert effective_priorities([5, 5, 9, 2], children, [0, 1, 2, 3]) == [9, 9, 9, 2]


def test_urgent_leaf_lifts_its_ancestor_before_a_longer_task() -> None:
    cmds = submit(
        "critical-path",
        [agent("a")],
        T("long", est=5),
        T("b", est=1),
        T("urgent", "b", est=1, priority=9),
    )
    assert cmds == [AssignTask(K("b"), "a", 1, True)]


def test_task_holding_the_end_goes_before_a_more_urgent_one_with_slack() -> None:
    cmds = submit("default", [agent("a")], T("long", est=10), T("urgent", est=1, priority=9))
    assert cmds == [AssignTask(K("long"), "a", 1, True)]


def test_urgent_task_goes_first_while_the_others_have_slack() -> None:
    cmds = submit(
        "default",
        [agent("a")],
        T("x", est=1),
        T("y", est=1),
        T("z", est=1),
        T("urgent", est=1, priority=9),
    )
    assert cmds == [AssignTask(K("urgent"), "a", 1, True)]


def test_holds_the_end_compares_rank_with_time_left() -> None:
    assert holds_the_end(rank=8.0, left_work=40.0, slots=4, margin=0.3)
    assert not holds_the_end(rank=6.0, left_work=40.0, slots=4, margin=0.3)


def test_plain_task_prefers_the_agent_without_extra_capabilities() -> None:
    cmds = submit("default", [agent("g", caps=GPU), agent("c")], T("x"))
    assert cmds == [AssignTask(K("x"), "c", 1, True)]


def test_ready_gpu_work_keeps_the_gpu_slot_from_a_higher_ranked_plain_task() -> None:
    cmds = submit(
        "default",
        [agent("g", caps=GPU), agent("c")],
        T("busy", est=10),
        T("plain", est=10),
        T("g1", est=1, requires=GPU),
    )
    assert cmds == [AssignTask(K("busy"), "c", 1, True), AssignTask(K("g1"), "g", 1, True)]


def test_without_scarcity_rules_a_plain_task_takes_the_gpu_slot() -> None:
    cmds = submit(
        "critical-path",
        [agent("g", caps=GPU), agent("c")],
        T("busy", est=10),
        T("plain", est=10),
        T("g1", est=1, requires=GPU),
    )
    assert cmds == [AssignTask(K("busy"), "g", 1, True), AssignTask(K("plain"), "c", 1, True)]


def _gpu_parent_running(plain2: float) -> SchedulerState:
    s = SchedulerState(SchedulerConfig())
    s.handle(
        AgentJoined(agent("g0", caps=GPU), 0),
        AgentJoined(agent("c"), 0),
        ProjectSubmitted(
            ProjectSpec(
                id="p",
                tasks=(
                    T("parent", est=2, requires=GPU),
                    T("child", "parent", est=1, requires=GPU),
                    T("plain", est=5),
                    T("plain2", est=plain2),
                ),
            ),
            0,
        ),
    )
    assert s.running("g0") == [K("parent")] and s.running("c") == [K("plain")]
    return s


def test_gpu_slot_is_kept_for_gpu_work_ready_before_a_plain_task_would_end() -> None:
    # at 1.98 s the gpu child is ready in 0.02 s; a 5 s plain task would still hold the slot
    s = _gpu_parent_running(plain2=5)
    assert s.handle(AgentJoined(agent("g1", caps=GPU), 1.98)) == []


def test_gpu_slot_runs_a_plain_task_that_ends_before_gpu_work_is_ready() -> None:
    # 0.01 s of plain work ends before the gpu child is ready (in 0.02 s)
    s = _gpu_parent_running(plain2=0.01)
    assert s.handle(AgentJoined(agent("g1", caps=GPU), 1.98)) == [
        AssignTask(K("plain2"), "g1", 1, True)
    ]


def test_needs_blocks_only_capabilities_the_task_does_not_need() -> None:
    nd = Needs()
    nd.add(GPU, 0.0, "t")
    waiting = lambda t: True  # noqa: E731
    assert nd.blocks(frozenset(), GPU, free=1, duration=1.0, waiting=waiting)
    assert not nd.blocks(GPU, GPU, free=1, duration=1.0, waiting=waiting)
    assert not nd.blocks(frozenset(), GPU, free=2, duration=1.0, waiting=waiting)


def _noisy(policy: str = "default") -> SchedulerState:
    """A scheduler whose completions showed estimates off by 2x either way
    (nothing started ahead: these rules are about the prefetch queue)."""
    s = SchedulerState(SchedulerConfig(policy=policy, start_ahead=0))
    for r in (2.0, 0.5) * 3:
        s.durations.errors.observe("old", 1.0, r)
    return s


def test_no_prefetch_onto_an_agent_busy_beyond_the_horizon_when_estimates_are_off() -> None:
    s = _noisy()
    cmds = s.handle(
        AgentJoined(agent("a", prefetch=1), 0),
        ProjectSubmitted(ProjectSpec(id="p", tasks=(T("x", est=5), T("y", est=3))), 0),
    )
    assert cmds == [AssignTask(K("x"), "a", 1, True)]


def test_prefetch_onto_an_agent_whose_slot_frees_within_the_horizon() -> None:
    s = _noisy()
    cmds = s.handle(
        AgentJoined(agent("a", prefetch=1), 0),
        ProjectSubmitted(ProjectSpec(id="p", tasks=(T("x", est=0.01), T("y", est=0.01))), 0),
    )
    assert cmds == [AssignTask(K("x"), "a", 1, True), AssignTask(K("y"), "a", 1, False)]


def test_prefetch_fills_as_asked_while_estimates_hold() -> None:
    cmds = submit("default", [agent("a", prefetch=1)], T("x", est=5), T("y", est=3))
    assert cmds == [AssignTask(K("x"), "a", 1, True), AssignTask(K("y"), "a", 1, False)]


def test_estimate_errors_scale_a_kind_after_enough_samples() -> None:
    e = EstimateErrors(min_samples=5)
    for _ in range(4):
        e.observe("k", 1.0, 2.0)
    assert e.scale("k") == 1.0
    e.observe("k", 1.0, 2.0)
    assert abs(e.scale("k") - 2.0) < 1e-9


def test_exact_estimates_have_no_spread() -> None:
    e = EstimateErrors(min_samples=2)
    for x in (1.0, 5.0, 9.0, 2.0):
        e.observe("k", x, x)
    assert e.spread() == 0.0 and e.scale("k") == 1.0


def test_spread_measures_the_error_around_the_kinds_calibration() -> None:
    e = EstimateErrors(min_samples=2)
    for r in (2.0, 0.5, 2.0, 0.5, 2.0, 0.5):
        e.observe("k", 1.0, r)
    assert 0.6 < e.spread() < 0.8  # |log 2| = 0.69


def test_margin_widens_with_the_spread() -> None:
    assert margin(0.3, 0.0) == 0.3
    assert abs(margin(0.3, 0.25) - 0.65) < 1e-9
    assert margin(0.3, 0.6) == 1.0


def test_duration_model_calibrates_estimates_per_kind() -> None:
    m = DurationModel()
    for _ in range(5):
        m.observe(T("d", est=1, kind="build"), 2.0)
    assert abs(m.predict(T("x", est=3, kind="build")) - 6.0) < 1e-9
    assert m.predict(T("y", est=3, kind="test")) == 3.0


def _run_one_agent(build: float) -> list[str]:
    """Start order on one agent of the docs/scheduling.md priority example."""
    s = SchedulerState(SchedulerConfig())
    p = ProjectSpec(
        id="p",
        tasks=(T("fetch", est=1), T("report", "fetch", est=1, priority=9), T("build", est=build)),
    )
    cmds = s.handle(AgentJoined(agent("a"), 0), ProjectSubmitted(p, 0))
    order: list[str] = []
    now = 0.0
    while cmds:
        started = [c.key.task for c in cmds if isinstance(c, AssignTask)]
        if not started:
            break
        order += started
        now += {"fetch": 1.0, "report": 1.0}.get(started[0], build)
        cmds = s.handle(TaskSucceeded(K(started[0]), "a", now, now))
    return order


def test_docs_example_urgent_leaf_lifts_its_ancestor() -> None:
    assert _run_one_agent(build=2) == ["fetch", "report", "build"]


def test_docs_example_task_holding_the_end_goes_first() -> None:
    assert _run_one_agent(build=10) == ["build", "fetch", "report"]


def test_freed_slot_takes_a_queued_task_holding_the_end_before_an_urgent_ready_one() -> None:
    s = SchedulerState(SchedulerConfig())
    tasks = (
        T("a1", est=2),
        T("b1", est=10),
        T("tail", est=7),
        T("urgent", "a1", est=3, priority=9),
    )
    s.handle(
        AgentJoined(agent("b", prefetch=1), 0),
        AgentJoined(agent("a"), 0),
        ProjectSubmitted(ProjectSpec(id="p", tasks=tasks), 0),
    )
    assert (s.running("b"), s.running("a"), s.queued("b")) == ([K("b1")], [K("a1")], [K("tail")])
    # at 2 s, 20 s of work are left on 2 slots: "tail" (7 s) holds the end
    assert s.handle(TaskSucceeded(K("a1"), "a", 2, 2)) == [
        StealTask(K("tail"), "b", "a", 1, True),
        AssignTask(K("urgent"), "b", 1, False),
    ]


def test_unbiased_noise_does_not_scale_a_kind() -> None:
    e = EstimateErrors(min_samples=5)
    for r in (1.5, 0.7, 1.3, 0.8, 1.1, 0.9):
        e.observe("k", 1.0, r)
    assert e.scale("k") == 1.0
