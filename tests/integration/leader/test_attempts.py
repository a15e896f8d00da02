"""Only a start counts as an attempt (issue 13, item 4).

An agent takes two assignments, one started and one queued, and vanishes.
With ``max_attempts: 1`` the started task has used its attempt and fails for
good (its dependant is cancelled); the queued one never ran, so it is ready
again at the same attempt, another agent runs it, its dependant runs, and the
project finishes. The scheduler and etcd agree on every task throughout.
"""

from __future__ import annotations

import time

import grpc
import pytest

from tests.security.conftest import RawAgent, base_settings, coordinator
from workhive.client import Client, Project, Task, TaskState
from workhive.v1 import agent_pb2

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SUCCEEDED, FAILED, CANCELLED = TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED


def _project() -> Project:
    return Project(
        "once",
        (
            Task("a", estimate=1.0, max_attempts=1),
            Task("b", estimate=1.0, max_attempts=1),
            Task("a-child", depends_on=("a",), estimate=1.0, max_attempts=1),
            Task("b-child", depends_on=("b",), estimate=1.0, max_attempts=1),
        ),
    )


def _run_everything(agent: RawAgent, until: set[str], timeout: float = 20.0) -> None:
    """Act as a well-behaved agent: start what is assigned, complete what runs."""
    done: set[str] = set()
    deadline = time.monotonic() + timeout
    while not until <= done:
        msg = agent.next(timeout=max(0.1, deadline - time.monotonic()))
        ref = agent.runnable(msg)
        if ref is not None:
            agent.send(completed=agent_pb2.TaskCompleted(task=ref, duration_seconds=0.01))
            done.add(ref.task_id)


def test_a_queued_task_whose_agent_vanished_runs_again_at_the_same_attempt(etcd_url: str) -> None:
    with coordinator(base_settings(etcd_url, plan_time_box=0)) as node:
        ch = grpc.insecure_channel(node.address)
        client = Client([node.address])
        lost = RawAgent(ch)
        lost.hello("agent-lost")  # one slot, one queued
        lost.next("welcome")
        client.submit(_project())
        first, second = lost.next("assign").assign, lost.next("assign").assign
        started, queued = (first, second) if first.started else (second, first)
        assert started.started and not queued.started
        lost.close()  # vanishes: its lease is revoked after the grace period

        deadline = time.monotonic() + 15
        while client.task("once", started.task.task_id).state != FAILED:
            assert time.monotonic() < deadline, "the vanished agent's claims were never lost"
            time.sleep(0.1)
        time.sleep(0.3)  # the queued task's requeue is written in the same turn or the next
        requeued = client.task("once", queued.task.task_id)
        assert requeued.state != FAILED, "a task that never started failed for good"
        assert requeued.attempt == 1

        other = RawAgent(ch)
        other.hello("agent-other")
        other.next("welcome")
        _run_everything(other, {queued.task.task_id, f"{queued.task.task_id}-child"})
        final = client.wait("once", timeout=20)

        tasks = {t.task_id: t for t in final.tasks}
        assert tasks[queued.task.task_id].state == SUCCEEDED
        assert tasks[queued.task.task_id].attempt == 1
        assert tasks[f"{queued.task.task_id}-child"].state == SUCCEEDED
        assert tasks[f"{started.task.task_id}-child"].state == CANCELLED
        # no hot loop of re-assignments: 2 first, the requeued one, its child
        assert client.status().metrics["assignments"] <= 6
        other.close()
        client.close()
        ch.close()
