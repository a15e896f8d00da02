"""Small projects through the turn, stored with their first claims
(``leader/submits.py``), against the executor's fake store: what is written,
in which call, what the agents are told and what the caller hears."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from tests.unit.leader.test_executor import Rig, rig
from workhive.coordinator.etcd import (
    FenceLost,
    ItemResult,
    ProjectExists,
    ProjectMeta,
    TaskRecord,
)
from workhive.coordinator.leader.executor import CommandExecutor
from workhive.coordinator.leader.submits import (
    MAX_TASKS,
    FullProtocol,
    Pending,
    Submits,
    fits,
)
from workhive.coordinator.model import ProjectSpec, TaskKey, TaskSpec, TaskState
from workhive.coordinator.scheduling import AssignTask, Event, ProjectSubmitted


def _spec(pid: str, n: int = 1) -> ProjectSpec:
    return ProjectSpec(id=pid, tasks=tuple(TaskSpec(id=f"t{i}") for i in range(n)))


class Turn:
    """One turn of the loop around the executor: requests accepted, the
    scheduler's assignments (given by the test) executed with them."""

    def __init__(self, r: Rig) -> None:
        self.r = r
        self.submits = Submits(r.term, r.replans.append)
        self.refused: list[bool] = []
        self.executor = CommandExecutor(r.term, r.replans.append, stored=self._stored)

    def _stored(self, pending: Sequence[Pending], results: Sequence[ItemResult]) -> None:
        self.refused.append(self.submits.settle(pending, results))

    def run(
        self, specs: Sequence[ProjectSpec], *assign: AssignTask, cancel_first: bool = False
    ) -> tuple[list[asyncio.Future[ProjectMeta]], list[Event]]:
        async def turn() -> tuple[list[asyncio.Future[ProjectMeta]], list[Event]]:
            reqs = [self.submits.request(s) for s in specs]
            if cancel_first:
                reqs[0].done.cancel()
            pending, events = self.submits.accept(reqs, 1000.0)
            await self.executor.execute(list(assign), (), pending)
            return [r.done for r in reqs], events

        return asyncio.run(turn())


def _outcome(fut: asyncio.Future[ProjectMeta]) -> object:
    if fut.cancelled():
        return "cancelled"
    exc = fut.exception()
    return type(exc) if exc is not None else fut.result().mod_revision


def test_a_project_is_stored_with_its_tasks_claims_in_one_call_before_its_agent_hears() -> None:
    r = rig("x")
    turn = Turn(r)
    futs, events = turn.run([_spec("n", 2)], AssignTask(TaskKey("n", "t0"), "a", 1, True))
    assert events == [ProjectSubmitted(_spec("n", 2), 1000.0)]
    assert r.store.calls == [
        ("submit and create", ["n"]),
        ("(projects)", ["t0"]),
        ("(claims)", ["t0"]),
    ]
    assert r.port.told == [("assign", "a", "t0", True)]
    mirror = r.term.view()
    assert mirror.projects["n"].mod_revision == 101
    assert mirror.tasks[TaskKey("n", "t1")].state is TaskState.READY
    assert mirror.claims[TaskKey("n", "t0")].fence == 101  # claimed at the project's revision
    assert [_outcome(f) for f in futs] == [101]
    assert r.replans == ["n"] and turn.refused == [False]


def test_a_project_without_a_free_agent_is_stored_alone() -> None:
    r = rig("x")
    futs, _ = Turn(r).run([_spec("n")])
    assert r.store.calls[0] == ("submit and create", ["n"])
    assert r.port.told == []
    assert [_outcome(f) for f in futs] == [101]
    assert "n" in r.term.view().projects


def test_a_project_the_mirror_holds_is_refused_at_once_and_nothing_is_written() -> None:
    r = rig("x")
    futs, events = Turn(r).run([_spec("p")])
    assert [_outcome(f) for f in futs] == [ProjectExists]
    assert events == [] and r.store.calls == []


def test_a_project_twice_in_one_turn_or_known_to_the_scheduler_takes_the_full_protocol() -> None:
    r = rig("x")
    futs, events = Turn(r).run([_spec("n"), _spec("n")])
    assert [_outcome(f) for f in futs] == [101, FullProtocol]
    assert len(events) == 1
    r.term.state.handle(ProjectSubmitted(_spec("k"), 1000.0))
    futs, events = Turn(r).run([_spec("k")])
    assert [_outcome(f) for f in futs] == [FullProtocol] and events == []


def test_a_project_with_keys_left_by_a_killed_submit_takes_the_full_protocol() -> None:
    r = rig("x")
    stale = TaskKey("n", "stale")
    r.term.view().staged["n"] = {stale: TaskRecord(stale, TaskSpec(id="stale"), TaskState.READY)}
    futs, events = Turn(r).run([_spec("n")])
    assert [_outcome(f) for f in futs] == [FullProtocol]
    assert events == [] and r.store.calls == []


def test_a_refused_project_sends_its_caller_to_the_full_protocol_and_asks_for_a_rebuild() -> None:
    r = rig("x")
    r.store.conflicts = {TaskKey("n", "t0")}
    turn = Turn(r)
    futs, _ = turn.run([_spec("n")], AssignTask(TaskKey("n", "t0"), "a", 1, True))
    assert [_outcome(f) for f in futs] == [FullProtocol]
    assert turn.refused == [True]
    assert r.port.told == []  # its claim was refused with it
    assert "n" not in r.term.view().projects and r.replans == []


def test_a_caller_that_gave_up_before_its_turn_is_skipped() -> None:
    r = rig("x")
    futs, events = Turn(r).run([_spec("n"), _spec("m")], cancel_first=True)
    assert [_outcome(f) for f in futs] == ["cancelled", 101]
    assert [e.spec.id for e in events if isinstance(e, ProjectSubmitted)] == ["m"]


def test_callers_still_waiting_when_the_term_ends_hear_it() -> None:
    async def waiting() -> object:
        submits = Submits(rig("x").term, lambda pid: None)
        req = submits.request(_spec("n"))
        submits.abandon()
        return _outcome(req.done)

    assert asyncio.run(waiting()) is FenceLost


@pytest.mark.parametrize(
    ("tasks", "payload", "small"),
    [
        (1, None, True),
        (MAX_TASKS, None, True),
        (MAX_TASKS + 1, None, False),
        (3, "x" * 200_000, False),
    ],
)
def test_only_small_projects_are_stored_with_their_claims(
    tasks: int, payload: str | None, small: bool
) -> None:
    spec = ProjectSpec(
        id="n", tasks=tuple(TaskSpec(id=f"t{i}", payload=payload) for i in range(tasks))
    )
    assert fits(spec) is small
