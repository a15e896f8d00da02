"""``workhive status --tasks``: each task's line shows its attempt and, when
the leader knows them, its deadline, next retry time and last failure."""

from __future__ import annotations

from workhive.client import TaskState, TaskStatus
from workhive.coordinator.cli.projects import task_line


def test_a_retrying_task_shows_attempt_next_retry_and_last_failure() -> None:
    t = TaskStatus(
        "p", "a", TaskState.PENDING, attempt=2, retry_at=3600.0, last_failure="deadline exceeded"
    )
    assert task_line(t) == "pending attempt 2 next retry 01:00:00 last failure: deadline exceeded"


def test_a_running_task_shows_its_deadline() -> None:
    t = TaskStatus("p", "a", TaskState.RUNNING, agent_id="ag", attempt=1, deadline_at=61.0)
    assert task_line(t) == "running ag attempt 1 deadline 00:01:01"


def test_a_failed_task_shows_its_reason_once() -> None:
    t = TaskStatus(
        "p",
        "a",
        TaskState.FAILED,
        attempt=3,
        reason="deadline exceeded",
        last_failure="deadline exceeded",
    )
    assert task_line(t) == "failed attempt 3 deadline exceeded"
