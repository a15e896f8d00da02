"""Chained tasks (``SchedulerConfig.chain_ahead``): a short task whose
unfinished dependencies all run on one agent is claimed for that agent,
started, before they end; the agent runs it the moment they succeed there.
Anything else that ends a dependency's run gives the chained task back."""

from __future__ import annotations

from workhive.coordinator.model import (
    AgentInfo,
    ProjectSpec,
    RetryBackoff,
    TaskKey,
    TaskSpec,
    TaskState,
)
from workhive.coordinator.scheduling import (
    Addition,
    AgentJoined,
    AgentLeft,
    AssignTask,
    CancelTask,
    ClaimLost,
    Command,
    MarkTaskFailed,
    ProjectSubmitted,
    RequeueTask,
    RevokeTask,
    SchedulerConfig,
    SchedulerState,
    TaskFailed,
    TasksAdded,
    TaskSucceeded,
)


def K(t: str) -> TaskKey:
    return TaskKey("p", t)


def T(tid: str, *deps: str, est: float = 0.01, **kw: object) -> TaskSpec:
    return TaskSpec(id=tid, depends_on=deps, estimate=est, **kw)  # type: ignore[arg-type]


def agent(aid: str = "a", chains: bool = True, **kw: object) -> AgentInfo:
    return AgentInfo(id=aid, slots=1, prefetch=0, chains=chains, **kw)  # type: ignore[arg-type]


def start(
    *tasks: TaskSpec, agents: tuple[AgentInfo, ...] = (), **cfg: object
) -> tuple[SchedulerState, list[Command]]:
    s = SchedulerState(SchedulerConfig(policy="greedy", start_ahead_tasks=0, **cfg))  # type: ignore[arg-type]
    joined = [AgentJoined(a, 0) for a in agents or (agent(),)]
    return s, list(s.handle(*joined, ProjectSubmitted(ProjectSpec("p", tasks), 0)))


ANY_REASON = "dependency a did not succeed on this agent"

CHAIN = (T("a"), T("b", "a"), T("c", "b"), T("d", "c"), T("e", "d"), T("f", "e"), T("g", "f"))


def test_a_chain_is_claimed_ahead_on_the_agent_running_its_head() -> None:
    _, cmds = start(T("a"), T("b", "a"), T("c", "b"))
    assert cmds == [
        AssignTask(K("a"), "a", 1, True),
        AssignTask(K("b"), "a", 1, True, after=("a",)),
        AssignTask(K("c"), "a", 1, True, after=("b",)),
    ]


def test_at_most_chain_ahead_tasks_wait_on_one_agent_and_more_follow_as_they_succeed() -> None:
    s, cmds = start(*CHAIN, chain_ahead=2)
    assert [c.key.task for c in cmds if isinstance(c, AssignTask)] == ["a", "b", "c"]
    more = list(s.handle(TaskSucceeded(K("a"), "a", 0.01, 1)))
    assert more == [AssignTask(K("d"), "a", 1, True, after=("c",))]
    assert s.task_state(K("b")) is TaskState.RUNNING


def test_a_chained_task_is_not_assigned_again_when_its_dependency_succeeds() -> None:
    s, _ = start(T("a"), T("b", "a"), chain_ahead=1)
    assert list(s.handle(TaskSucceeded(K("a"), "a", 0.01, 1))) == []
    assert s.task_state(K("b")) is TaskState.RUNNING


def test_a_child_with_a_dependency_elsewhere_is_not_chained() -> None:
    _, cmds = start(T("a"), T("x"), T("b", "a", "x"), agents=(agent("a"), agent("z")))
    assert [c for c in cmds if isinstance(c, AssignTask) and c.after] == []


def test_only_the_highest_ranked_child_of_a_task_is_chained() -> None:
    _, cmds = start(T("a"), T("short", "a"), T("long", "a", est=0.04), chain_ahead=4)
    assert [c.key.task for c in cmds if isinstance(c, AssignTask) and c.after] == ["long"]


def test_nothing_is_chained_to_an_agent_that_cannot_or_when_disabled() -> None:
    for cmds in (
        start(T("a"), T("b", "a"), agents=(agent(chains=False),))[1],
        start(T("a"), T("b", "a"), chain_ahead=0)[1],
    ):
        assert cmds == [AssignTask(K("a"), "a", 1, True)]


def test_long_tasks_tasks_with_deadlines_and_children_of_tasks_with_deadlines_are_not_chained() -> (
    None
):
    for tasks in (
        (T("a"), T("b", "a", est=5.0)),
        (T("a"), T("b", "a", timeout=30.0)),
        (T("a", timeout=30.0), T("b", "a")),
    ):
        assert start(*tasks)[1] == [AssignTask(K("a"), "a", 1, True)]


def test_a_child_needing_a_capability_the_agent_lacks_is_not_chained() -> None:
    _, cmds = start(T("a"), T("b", "a", requires=frozenset({"gpu"})))
    assert cmds == [AssignTask(K("a"), "a", 1, True)]


def test_a_retried_failure_revokes_what_was_chained_after_it_and_it_waits_again() -> None:
    s, _ = start(T("a", max_attempts=2), T("b", "a"), T("c", "b"))
    cmds = list(s.handle(TaskFailed(K("a"), "a", "boom", True, 1)))
    assert RevokeTask(K("b"), "a", 1, "dependency a did not succeed on this agent") in cmds
    assert RevokeTask(K("c"), "a", 1, "dependency b did not succeed on this agent") in cmds
    assert RequeueTask(K("a"), 2, "failed: boom") in cmds
    # the retry runs on the same agent, so b is chained after it again: a new claim
    again = AssignTask(K("b"), "a", 1, True, after=("a",))
    assert cmds.index(again) > cmds.index(RevokeTask(K("b"), "a", 1, ANY_REASON))


def test_a_retry_held_by_its_backoff_leaves_what_was_chained_after_it_waiting() -> None:
    s, _ = start(T("a", max_attempts=2, retry_backoff=RetryBackoff(5.0, 5.0)), T("b", "a"))
    cmds = list(s.handle(TaskFailed(K("a"), "a", "boom", True, 1)))
    assert [c for c in cmds if isinstance(c, RevokeTask)] == [
        RevokeTask(K("b"), "a", 1, "dependency a did not succeed on this agent")
    ]
    assert not [c for c in cmds if isinstance(c, AssignTask)]
    assert s.task_state(K("b")) is TaskState.PENDING


def test_a_final_failure_cancels_what_was_chained_after_it() -> None:
    s, _ = start(T("a"), T("b", "a"))
    cmds = list(s.handle(TaskFailed(K("a"), "a", "boom", False, 1)))
    assert MarkTaskFailed(K("a"), 1, "boom") in cmds
    assert CancelTask(K("b"), "dependency a failed", None) in cmds
    assert s.task_state(K("b")) is TaskState.CANCELLED


def test_an_agent_leaving_gives_chained_tasks_back_unspent_and_revokes_nothing() -> None:
    s, _ = start(T("a"), T("b", "a"), agents=(agent("a"), agent("z", chains=False)))
    cmds = list(s.handle(AgentLeft("a", 1)))
    assert not [c for c in cmds if isinstance(c, RevokeTask)]
    assert AssignTask(K("a"), "z", 2, True) in cmds
    assert s.task_state(K("b")) is TaskState.PENDING
    cmds = list(s.handle(TaskSucceeded(K("a"), "z", 0.01, 2)))
    assert AssignTask(K("b"), "z", 1, True) in cmds  # its first attempt: never started


def test_a_lost_chained_claim_waits_for_its_dependency_again() -> None:
    s, _ = start(T("a"), T("b", "a"))
    assert list(s.handle(ClaimLost(K("b"), "a", 1))) == []
    assert s.task_state(K("b")) is TaskState.PENDING
    assert list(s.handle(TaskSucceeded(K("a"), "a", 0.01, 1))) == [AssignTask(K("b"), "a", 1, True)]


def test_what_is_chained_after_a_task_is_known_to_be_unstarted() -> None:
    s, _ = start(T("a"), T("b", "a"), T("c", "b"), T("x"), agents=(agent("a"), agent("z")))
    assert s.chained_after(K("a")) == frozenset({"b", "c"})
    assert s.chained_after(K("b")) == frozenset({"c"})
    assert s.chained_after(K("x")) == frozenset()


def test_a_chained_task_blocked_by_new_tasks_is_given_back_and_waits_for_them() -> None:
    s, _ = start(T("a"), T("b", "a"))
    add = Addition("p", (T("n", "a"),), {"n": ("b",)})
    cmds = list(s.handle(TasksAdded(add, 1), TaskSucceeded(K("a"), "a", 0.01, 1)))
    assert cmds[0] == RevokeTask(K("b"), "a", 1, "blocked by n")
    assert AssignTask(K("n"), "a", 1, True) in cmds
    assert AssignTask(K("b"), "a", 1, True, after=("n",)) in cmds


def test_a_chained_task_handed_back_waits_for_its_dependencies_again_unspent() -> None:
    s, _ = start(T("a"), T("b", "a"), T("c", "b"))
    cmds = list(s.handle(TaskFailed(K("b"), "a", "draining", True, 1, spent=False)))
    assert cmds == [RevokeTask(K("c"), "a", 1, "dependency b did not succeed on this agent")]
    assert s.task_state(K("b")) is TaskState.PENDING
    assert s.task_attempt(K("b")) == 1
