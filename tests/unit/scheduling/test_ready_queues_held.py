"""``ReadyQueues``' queued heap (docs/scheduling.md, "Stealing"): work queued
on an agent that has a free slot for the moment is set aside, not rescanned
by every later call of the step, and back in reach once that agent's slots
are all busy again."""

from __future__ import annotations

from workhive.coordinator.model import AgentInfo, ProjectSpec, TaskKey, TaskSpec, TaskState
from workhive.coordinator.scheduling import SchedulerConfig
from workhive.coordinator.scheduling.ready_queues import ReadyQueues
from workhive.coordinator.scheduling.records import (
    AgentGroup,
    AgentRecord,
    Counter,
    ProjectRecord,
    TaskRecord,
)


def _queued(queues: ReadyQueues, agent: AgentRecord, tid: str, rank: float) -> TaskRecord:
    spec = TaskSpec(id=tid, estimate=1.0)
    t = TaskRecord(TaskKey("p", tid), spec, 0, ProjectRecord(ProjectSpec("p", (spec,))))
    t.rank, t.state, t.agent = rank, TaskState.ASSIGNED, agent
    agent.queue.append(t)
    queues.push_queued(t)
    return t


def _agent(aid: str) -> AgentRecord:
    return AgentRecord(AgentInfo(id=aid, slots=1, prefetch=4), 0, AgentGroup(frozenset()))


def _busy(agent: AgentRecord, tid: str) -> None:
    spec = TaskSpec(id=tid)
    agent.running[TaskKey("p", tid)] = TaskRecord(
        TaskKey("p", tid), spec, 0, ProjectRecord(ProjectSpec("p", (spec,)))
    )


def _setup() -> tuple[ReadyQueues, AgentRecord, AgentRecord]:
    """``free`` has a free slot and queues ``f1`` (rank 9) and ``f2`` (8);
    ``busy`` runs a task and queues ``b1`` (rank 1)."""
    queues = ReadyQueues(SchedulerConfig(policy="default"), Counter())
    free, busy = _agent("free"), _agent("busy")
    _busy(busy, "running")
    _queued(queues, free, "f1", 9.0)
    _queued(queues, free, "f2", 8.0)
    _queued(queues, busy, "b1", 1.0)
    return queues, free, busy


def test_the_top_is_the_most_urgent_task_queued_on_an_agent_whose_slots_are_all_busy() -> None:
    queues, _, _ = _setup()
    top = queues.top_queued()
    assert top is not None and top[2].key.task == "b1"
    assert queues.queued[0] is top


def test_work_queued_on_an_agent_with_a_free_slot_is_set_aside_not_rescanned() -> None:
    queues, _, _ = _setup()
    queues.top_queued()
    assert len(queues.queued) == 1  # only b1 is left to look at
    assert [e[2].key.task for e in queues.held["free"]] == ["f1", "f2"]


def test_set_aside_work_is_back_in_reach_once_its_agents_slots_fill() -> None:
    queues, free, _ = _setup()
    queues.top_queued()
    _busy(free, "other")
    queues.release("free")
    top = queues.top_queued()
    assert top is not None and top[2].key.task == "f1"
    assert queues.held == {}


def test_settle_releases_work_of_agents_whose_slots_filled_without_a_release() -> None:
    queues, free, _ = _setup()
    queues.top_queued()
    _busy(free, "restored")
    queues.settle()
    assert queues.held == {}
    top = queues.top_queued()
    assert top is not None and top[2].key.task == "f1"


def test_settle_keeps_aside_the_work_of_agents_that_still_have_a_free_slot() -> None:
    queues, _, _ = _setup()
    queues.top_queued()
    queues.settle()
    assert [e[2].key.task for e in queues.held["free"]] == ["f1", "f2"]


def test_settle_drops_set_aside_work_that_went_stale() -> None:
    queues, _, _ = _setup()
    queues.top_queued()
    f1 = queues.held["free"][0][2]
    f1.state = TaskState.RUNNING  # started on its own agent's free slot
    queues.settle()
    assert [e[2].key.task for e in queues.held["free"]] == ["f2"]
