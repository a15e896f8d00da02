"""Per-task deadlines and retry backoff in the scheduling core: events in,
exact command lists out (docs/scheduling.md, "Deadlines and backoff")."""

from __future__ import annotations

import pytest

from workhive.coordinator.model import (
    AgentInfo,
    ProjectSpec,
    RetryBackoff,
    TaskKey,
    TaskSpec,
    TaskState,
)
from workhive.coordinator.scheduling import (
    AgentJoined,
    AssignTask,
    DeadlineTick,
    MarkTaskFailed,
    ProjectFinished,
    ProjectSubmitted,
    RequeueTask,
    RevokeTask,
    SchedulerConfig,
    SchedulerState,
    TaskFailed,
    TaskSucceeded,
    backoff_delay,
)
from workhive.coordinator.scheduling.retry_policy import RetryWaits

EXCEEDED = "deadline exceeded"
X = TaskKey("p", "x")


def one_task(**kw: object) -> SchedulerState:
    """Agent ``a`` (one slot) running task ``x`` (started at 0)."""
    s = SchedulerState(SchedulerConfig(policy="critical-path"))
    task = TaskSpec(id="x", estimate=1.0, **kw)  # type: ignore[arg-type]
    cmds = s.handle(
        AgentJoined(AgentInfo(id="a", prefetch=0), 0.0),
        ProjectSubmitted(ProjectSpec(id="p", tasks=(task,)), 0.0),
    )
    assert cmds == [AssignTask(X, "a", 1, True)]
    return s


def test_no_backoff_policy_retries_at_once() -> None:
    assert backoff_delay(None, X, 1) == 0.0
    assert backoff_delay(RetryBackoff(base=0.0, cap=10.0), X, 3) == 0.0


def test_backoff_doubles_per_attempt_with_equal_jitter_up_to_the_cap() -> None:
    policy = RetryBackoff(base=2.0, cap=10.0)
    for attempt, full in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (60, 10.0)]:
        d = backoff_delay(policy, X, attempt)
        assert full / 2 <= d < full


def test_backoff_jitter_is_deterministic_per_key_and_attempt() -> None:
    policy = RetryBackoff(base=100.0, cap=100.0)
    assert backoff_delay(policy, X, 1) == backoff_delay(policy, TaskKey("p", "x"), 1)
    spread = {backoff_delay(policy, TaskKey("p", f"t{i}"), 1) for i in range(20)}
    assert len(spread) == 20


def test_retry_waits_release_each_key_once_earliest_first() -> None:
    w = RetryWaits()
    w.hold(TaskKey("p", "b"), 5.0, 2)
    w.hold(TaskKey("p", "a"), 3.0, 2)
    w.hold(TaskKey("p", "a"), 4.0, 3)  # replaces the earlier wait
    assert w.next_at() == 4.0
    assert w.due(3.5) == []
    assert w.due(10.0) == [(TaskKey("p", "a"), 3), (TaskKey("p", "b"), 2)]
    assert w.due(10.0) == [] and len(w) == 0


def test_task_past_its_timeout_is_revoked_and_retried_at_once_without_backoff() -> None:
    s = one_task(timeout=1.0)
    assert s.deadline_at(X) == 1.0
    assert s.next_wakeup() == 1.0
    assert s.handle(DeadlineTick(0.999)) == []
    assert s.handle(DeadlineTick(1.0)) == [
        RevokeTask(X, "a", 1, EXCEEDED),
        RequeueTask(X, 2, EXCEEDED),
        AssignTask(X, "a", 2, True),
    ]
    assert s.deadline_at(X) == 2.0  # the new attempt's own clock


def test_revoked_task_waits_out_its_backoff_before_running_again() -> None:
    policy = RetryBackoff(base=4.0, cap=60.0)
    s = one_task(timeout=1.0, retry_backoff=policy)
    delay = backoff_delay(policy, X, 1)
    assert s.handle(DeadlineTick(1.0)) == [
        RevokeTask(X, "a", 1, EXCEEDED),
        RequeueTask(X, 2, EXCEEDED),
    ]
    assert s.task_state(X) is TaskState.PENDING
    assert s.retry_at(X) == pytest.approx(1.0 + delay)
    assert s.next_wakeup() == pytest.approx(1.0 + delay)
    assert s.handle(DeadlineTick(1.0 + delay - 0.01)) == []
    assert s.handle(DeadlineTick(1.0 + delay)) == [AssignTask(X, "a", 2, True)]
    assert s.retry_at(X) is None


def test_deadline_exceeded_on_the_last_attempt_fails_the_task_for_good() -> None:
    s = one_task(timeout=1.0, max_attempts=2)
    s.handle(DeadlineTick(1.0))
    assert s.handle(DeadlineTick(2.0)) == [
        RevokeTask(X, "a", 2, EXCEEDED),
        MarkTaskFailed(X, 2, EXCEEDED),
        ProjectFinished("p", "failed"),
    ]
    assert s.handle(DeadlineTick(10.0)) == []


def test_task_finished_before_its_deadline_is_not_revoked() -> None:
    s = one_task(timeout=5.0)
    cmds = s.handle(TaskSucceeded(X, "a", 1.0, 1.0))
    assert cmds == [ProjectFinished("p", "succeeded")]
    assert s.handle(DeadlineTick(6.0)) == []


def test_task_without_timeout_runs_past_any_tick() -> None:
    s = one_task()
    assert s.next_wakeup() is None
    assert s.handle(DeadlineTick(1e9)) == []
    assert s.task_state(X) is TaskState.RUNNING


def test_failed_attempt_waits_out_its_backoff() -> None:
    policy = RetryBackoff(base=2.0, cap=2.0)
    s = one_task(retry_backoff=policy)
    delay = backoff_delay(policy, X, 1)
    assert s.handle(TaskFailed(X, "a", "boom", True, 5.0)) == [RequeueTask(X, 2, "failed: boom")]
    assert s.retry_at(X) == pytest.approx(5.0 + delay)
    assert s.handle(DeadlineTick(5.0 + delay)) == [AssignTask(X, "a", 2, True)]


def test_handed_back_task_is_ready_at_once_despite_backoff() -> None:
    s = one_task(retry_backoff=RetryBackoff(base=30.0, cap=30.0))
    cmds = s.handle(TaskFailed(X, "a", "draining", True, 5.0, spent=False))
    assert cmds == [RequeueTask(X, 1, "released: draining"), AssignTask(X, "a", 1, True)]


def test_last_failure_names_the_deadline_until_the_next_failure() -> None:
    s = one_task(timeout=1.0)
    assert s.last_failure(X) == ""
    s.handle(DeadlineTick(1.0))
    assert s.last_failure(X) == EXCEEDED
    s.handle(TaskFailed(X, "a", "boom", True, 1.5))
    assert s.last_failure(X) == "failed: boom"
