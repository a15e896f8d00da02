"""The SDK's held-task table with chained tasks (``Assign.after``,
docs/agent.md "Chained tasks"): a chained task waits until each dependency
it names has succeeded on this agent, then runs with their results in its
inputs; nothing else lets it run. Pure table transitions: no session, no
worker threads."""

from __future__ import annotations

import json

from workhive.agent import Agent
from workhive.agent._types import Outcome, TaskKey
from workhive.v1 import agent_pb2, common_pb2


def assign(
    tid: str, *after: str, fence: int = 10, inputs: dict[str, object] | None = None
) -> agent_pb2.Assign:
    return agent_pb2.Assign(
        task=common_pb2.TaskRef(project_id="p", task_id=tid, fence=fence, attempt=1),
        started=True,
        after=list(after),
        inputs_json=json.dumps(inputs) if inputs else "",
    )


def success(tid: str, result: object = None, new_tasks: str = "") -> Outcome:
    return Outcome(
        TaskKey("p", tid, 9, 1),
        succeeded=True,
        duration_seconds=0.01,
        result_json="" if result is None else json.dumps(result),
        new_tasks_json=new_tasks,
    )


def states(a: Agent) -> dict[str, list[str]]:
    return {state: sorted(k.task_id for k in keys) for state, keys in a.held().items()}


def agent() -> Agent:
    return Agent("127.0.0.1:1", agent_id="t")


def test_a_chained_task_waits_then_runs_with_its_dependencys_result() -> None:
    a = agent()
    with a._lock:
        a._on_assign(assign("b", "a", inputs={"x": 1}))
    assert states(a) == {"waiting": ["b"]}
    with a._lock:
        a._succeeded_here(success("a", {"n": 2}))
    assert states(a) == {"runnable": ["b"]}
    assert a._held[("p", "b")].task.inputs == {"x": 1, "a": {"n": 2}}


def test_a_chained_task_arriving_after_its_dependency_succeeded_here_runs_at_once() -> None:
    a = agent()
    with a._lock:
        a._succeeded_here(success("a"))
        a._on_assign(assign("b", "a"))
    assert states(a) == {"runnable": ["b"]}
    assert a._held[("p", "b")].task.inputs == {}  # a had no result


def test_it_waits_for_every_dependency_it_names() -> None:
    a = agent()
    with a._lock:
        a._on_assign(assign("c", "a", "b"))
        a._succeeded_here(success("a"))
    assert states(a) == {"waiting": ["c"]}
    with a._lock:
        a._succeeded_here(success("b"))
    assert states(a) == {"runnable": ["c"]}


def test_a_failure_or_a_success_that_adds_tasks_does_not_let_it_run() -> None:
    a = agent()
    with a._lock:
        a._on_assign(assign("b", "a"))
        a._succeeded_here(Outcome(TaskKey("p", "a", 9, 1), succeeded=False, duration_seconds=0.01))
        a._succeeded_here(success("a", new_tasks='[{"id": "n", "blocks": ["b"]}]'))
    assert states(a) == {"waiting": ["b"]}


def test_a_revoke_drops_a_waiting_task() -> None:
    a = agent()
    with a._lock:
        a._on_assign(assign("b", "a"))
        a._on_taken_back(TaskKey("p", "b", 10, 1), "dependency a did not succeed", [])
    assert states(a) == {}
    assert a.counters.dropped == 1


def test_sent_again_with_nothing_left_to_wait_for_it_runs() -> None:
    a = agent()
    with a._lock:
        a._on_assign(assign("b", "a"))
        a._on_assign(assign("b"))  # the leader saw a succeed (e.g. after a reconnect)
    assert states(a) == {"runnable": ["b"]}


def test_a_draining_agent_hands_a_chained_task_back_unrun() -> None:
    a = agent()
    with a._lock:
        a._draining = True
        a._on_assign(assign("b", "a"))
    assert states(a) == {}
    back = a._unacked[("p", "b")]
    assert (back.succeeded, back.released, back.reason) == (False, True, "draining")
