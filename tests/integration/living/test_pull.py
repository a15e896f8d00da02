"""Pull claims: an agent asks for its next task and gets the best one for it,
or nothing when its wait ends; it can hand a task back; push and pull agents
serve one project (real coordinator processes and etcd)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.integration.living.conftest import SUM_CMD, Harness
from workhive.agent import PullAgent
from workhive.client import Project, Task

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

Make = Callable[..., Harness]


@pytest.fixture
def pull(make_cluster: Make) -> Iterator[tuple[Harness, Callable[..., PullAgent]]]:
    h = make_cluster().start(coordinators=1)
    made: list[PullAgent] = []

    def agent(**kw: object) -> PullAgent:
        a = PullAgent(h.cluster.coordinator_addresses, exec_log=h.cluster.exec_log, **kw)  # type: ignore[arg-type]
        made.append(a.start())
        return a

    try:
        yield h, agent
    finally:
        for a in made:
            a.close()


def test_a_claim_is_answered_with_a_ready_task_and_its_parents_results(pull) -> None:  # type: ignore[no-untyped-def]
    h, agent = pull
    a = agent(agent_id="puller")
    h.client.submit(Project("p1", (Task("a"), Task("b", depends_on=("a",)))))
    first = a.claim_next(wait=10)
    assert first is not None and first.task_id == "a" and first.inputs == {}
    assert a.complete(first, {"note": "design done"})
    second = a.claim_next(wait=10)
    assert second is not None and second.task_id == "b"
    assert second.inputs == {"a": {"note": "design done"}}
    assert a.complete(second)
    h.wait_finished("p1")
    assert h.audit().ok


def test_a_claim_with_nothing_ready_answers_none_when_its_wait_ends(pull) -> None:  # type: ignore[no-untyped-def]
    _, agent = pull
    a = agent()
    t0 = time.monotonic()
    assert a.claim_next(wait=1.0) is None
    assert 0.9 <= time.monotonic() - t0 < 4.0


def test_a_released_task_is_ready_again_at_once_at_the_same_attempt(pull) -> None:  # type: ignore[no-untyped-def]
    h, agent = pull
    a = agent()
    h.client.submit(Project("rel", (Task("t"),)))
    t = a.claim_next(wait=10)
    assert t is not None
    assert a.release(t)
    again = a.claim_next(wait=10)
    assert again is not None and again.task_id == "t" and again.attempt == t.attempt
    assert again.fence != t.fence
    a.complete(again)
    h.wait_finished("rel")


def test_a_pull_agent_is_never_given_a_task_it_lacks_the_capability_for(pull) -> None:  # type: ignore[no-untyped-def]
    h, agent = pull
    a = agent(capabilities=["python"])
    h.client.submit(Project("caps", (Task("gpu", requires=frozenset({"gpu"})), Task("py"))))
    t = a.claim_next(wait=10)
    assert t is not None and t.task_id == "py"
    a.complete(t)
    assert a.claim_next(wait=1.0) is None


def test_push_and_pull_agents_serve_one_project(pull) -> None:  # type: ignore[no-untyped-def]
    h, agent = pull
    h.cluster.add_agent(SUM_CMD, slots=1, agent_id="pusher")
    a = agent()
    deadline = time.monotonic() + 30
    while not any(x.agent_id == "pusher" and x.connected for x in h.status().agents):
        assert time.monotonic() < deadline, "the push agent never connected"
        time.sleep(0.1)
    tasks = tuple(Task(f"t{i}", payload={"sleep": 0.3}) for i in range(12))
    h.client.submit(Project("mixed", (*tasks, Task("end", depends_on=tuple(t.id for t in tasks)))))
    pulled = []
    while (t := a.claim_next(wait=2.0)) is not None:
        pulled.append(t.task_id)
        a.complete(t, {"sum": 1})
    done = h.wait_finished("mixed")
    assert done.counts == {"succeeded": 13}
    assert pulled and len(pulled) < 13  # both kinds of agent ran tasks
    report = h.audit()
    assert report.ok, report.violations
