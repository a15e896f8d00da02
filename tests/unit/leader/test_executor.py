"""The command executor against a fake claims store: no etcd, no threads.

Each test gives the executor one turn's commands and compares what it asked
of the store, what it told the agents (instruction lists) and the events it
hands back to the scheduler, in the style of dask's worker-state-machine
tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from workhive.coordinator.etcd import (
    ClaimRequest,
    Claims,
    ClusterState,
    Completion,
    Fence,
    Finish,
    ItemResult,
    Keyspace,
    Outcome,
    ProjectMeta,
    Steal,
    Submission,
    TaskRecord,
)
from workhive.coordinator.leader.clock import Clock
from workhive.coordinator.leader.completions import Completions, Speculated
from workhive.coordinator.leader.executor import CommandExecutor
from workhive.coordinator.leader.ports import Report
from workhive.coordinator.leader.term import Term
from workhive.coordinator.leader.writes import NotLeading, Writer
from workhive.coordinator.metrics import Metrics
from workhive.coordinator.model import (
    AgentInfo,
    Claim,
    TaskKey,
    TaskRef,
    TaskResult,
    TaskSpec,
    TaskState,
)
from workhive.coordinator.scheduling import (
    AssignRejected,
    AssignTask,
    CancelTask,
    Command,
    Event,
    MarkTaskFailed,
    RequeueTask,
    SchedulerConfig,
    StartTask,
    StealTask,
)

FENCE = Fence(b"/election/1", 7)
METRICS = Metrics()


def K(task: str) -> TaskKey:
    return TaskKey("p", task)


@dataclass
class FakeStore:
    """A claims store that commits everything (revisions count up from 100)
    except the keys in ``conflicts``; ``not_leader`` makes every write fail
    the fence. ``calls`` records (method, keys) in order."""

    conflicts: set[TaskKey] = field(default_factory=set)
    not_leader: bool = False
    calls: list[tuple[str, list[str]]] = field(default_factory=list)
    revision: int = 100
    records: dict[TaskKey, TaskRecord] = field(default_factory=dict)
    lives: dict[int, tuple[int, int]] = field(default_factory=dict)  # lease -> (left, granted)
    barrier_unknown: bool = False  # the barrier's outcome was lost (CONFLICT, revision 0)

    def _results(self, name: str, keys: list[TaskKey]) -> list[ItemResult]:
        self.calls.append((name, [k.task for k in keys]))
        out = []
        for k in keys:
            if self.not_leader:
                out.append(ItemResult(Outcome.NOT_LEADER))
            elif k in self.conflicts:
                out.append(ItemResult(Outcome.CONFLICT))
            else:
                self.revision += 1
                out.append(ItemResult(Outcome.OK, self.revision))
        return out

    def create(self, reqs: Sequence[ClaimRequest], fence: Fence) -> list[ItemResult]:
        res = self._results("create", [r.record.key for r in reqs])
        return [Claims.claimed(r, o) for r, o in zip(reqs, res, strict=True)]

    def start(self, claims: Sequence[Claim], fence: Fence) -> list[ItemResult]:
        res = self._results("start", [c.key for c in claims])
        return [
            replace(o, claim=replace(c, started=True, mod_revision=o.revision)) if o.ok else o
            for c, o in zip(claims, res, strict=True)
        ]

    def steal(self, moves: Sequence[Steal], fence: Fence) -> list[ItemResult]:
        res = self._results("steal", [m.claim.key for m in moves])
        return [
            replace(
                o,
                claim=replace(m.claim, agent=m.agent, lease_id=m.lease_id, mod_revision=o.revision),
            )
            if o.ok
            else o
            for m, o in zip(moves, res, strict=True)
        ]

    def release(self, claims: Sequence[Claim], fence: Fence) -> list[ItemResult]:
        return self._results("release", [c.key for c in claims])

    def requeue(
        self, records: Sequence[TaskRecord], fence: Fence, attempts: Sequence[int] | None = None
    ) -> list[ItemResult]:
        self.calls.append(("requeue attempts", [str(a) for a in attempts or ()]))
        return self._results("requeue", [r.key for r in records])

    def finish(self, items: Sequence[Finish], fence: Fence) -> list[ItemResult]:
        return self._results("finish", [f.record.key for f in items])

    def complete(
        self, comps: Sequence[Completion], fence: Fence, known: Mapping[TaskKey, TaskRecord]
    ) -> list[ItemResult]:
        return self._results("complete", [c.key for c in comps])

    def complete_and_create(
        self,
        comps: Sequence[Completion],
        known: Mapping[TaskKey, TaskRecord],
        reqs: Sequence[ClaimRequest],
        fence: Fence,
    ) -> tuple[list[ItemResult], list[ItemResult]]:
        self.calls.append(("complete and create", [c.key.task for c in comps]))
        return self._results("(completions)", [c.key for c in comps]), self.create(reqs, fence)

    def submit_and_create(
        self, subs: Sequence[Submission], reqs: Sequence[ClaimRequest], fence: Fence
    ) -> tuple[list[ItemResult], list[ItemResult]]:
        """Each project commits (or not: a key of it in ``conflicts``) with its claims."""
        self.calls.append(("submit and create", [s.meta.id for s in subs]))
        stored = self._results("(projects)", [s.records[0].key for s in subs])
        by_project = {s.meta.id: o for s, o in zip(subs, stored, strict=True)}
        made = [Claims.claimed(r, by_project[r.record.key.project]) for r in reqs]
        self.calls.append(("(claims)", [r.record.key.task for r in reqs]))
        return stored, made

    def task_record(self, key: TaskKey) -> TaskRecord | None:
        self.calls.append(("read", [key.task]))
        return self.records.get(key)

    def barrier(self, fence: Fence) -> ItemResult:
        self.calls.append(("barrier", []))
        if self.not_leader:
            return ItemResult(Outcome.NOT_LEADER)
        if self.barrier_unknown:
            return ItemResult(Outcome.CONFLICT)
        self.revision += 1
        return ItemResult(Outcome.OK, self.revision)

    def lease_ttl(self, lease_id: int) -> int:
        return 10

    def lease_life(self, lease_id: int) -> tuple[int, int]:
        self.calls.append(("lease life", [str(lease_id)]))
        return self.lives.get(lease_id, (0, 6))

    def revoke_lease(self, lease_id: int) -> None:
        self.calls.append(("revoke lease", [str(lease_id)]))


@dataclass
class FakePort:
    """Records what the agents are told, as (instruction, agent, task, detail)."""

    sessions: dict[str, int] = field(default_factory=lambda: {"a": 11, "b": 12})
    told: list[tuple[str, str, str, Any]] = field(default_factory=list)

    def assign(
        self, claim: Claim, spec: TaskSpec, term: int, inputs: Mapping[str, str] | None = None
    ) -> None:
        self.told.append(("assign", claim.agent, claim.key.task, claim.started))

    def grant(self, claim: Claim) -> None:
        self.told.append(("grant", claim.agent, claim.key.task, None))

    def revoke(self, agent_id: str, ref: TaskRef, reason: str) -> None:
        self.told.append(("revoke", agent_id, ref.key.task, reason))

    def ack(self, agent_id: str, ref: TaskRef) -> None:
        self.told.append(("ack", agent_id, ref.key.task, None))

    def reject(self, agent_id: str, ref: TaskRef, reason: str, invalid: bool = False) -> None:
        self.told.append(("reject", agent_id, ref.key.task, reason))

    def connected(self, agent_id: str) -> bool:
        return agent_id in self.sessions

    def session_lease(self, agent_id: str) -> int:
        return self.sessions.get(agent_id, 0)

    def session_count(self) -> int:
        return len(self.sessions)

    def forget(self, agent_id: str) -> None:
        pass


async def _inline(fn: Any, *args: Any) -> Any:
    return fn(*args)


@dataclass
class Rig:
    store: FakeStore
    port: FakePort
    term: Term
    executor: CommandExecutor
    replans: list[str]

    def run(self, *commands: Command, completing: Sequence[Speculated] = ()) -> list[Event]:
        return asyncio.run(self.executor.execute(list(commands), completing))


def rig(*tasks: str, claims: Sequence[Claim] = ()) -> Rig:
    mirror = ClusterState(Keyspace("/t/"), revision=50)
    mirror.projects["p"] = ProjectMeta("p", len(tasks))
    for i, t in enumerate(tasks):
        mirror.fold_task(
            TaskRecord(K(t), TaskSpec(id=t), TaskState.READY, attempt=1, mod_revision=10 + i)
        )
    for c in claims:
        mirror.fold_claim(c)
    mirror.agents.update({a: AgentInfo(a, lease_id=lease) for a, lease in (("a", 11), ("b", 12))})
    store, port = FakeStore(), FakePort()
    clock = Clock(wall=lambda: 1000.0, monotonic=lambda: 5.0)
    writer = Writer(store, FENCE, METRICS, run=_inline)
    term = Term(FENCE, port, writer, METRICS, clock, SchedulerConfig())
    term.mirror = mirror
    replans: list[str] = []

    def confirm(spec: Sequence[Speculated], results: Sequence[ItemResult]) -> None:
        for sp, res in zip(spec, results, strict=True):
            port.told.append(("confirmed", sp.report.agent_id, sp.completion.key.task, res.ok))

    return Rig(store, port, term, CommandExecutor(term, replans.append, confirm), replans)


def test_an_assignment_reaches_its_agent_only_after_its_claim_committed() -> None:
    r = rig("x", "y")
    events = r.run(AssignTask(K("x"), "a", 1, True), AssignTask(K("y"), "a", 1, False))
    assert r.store.calls == [("create", ["x", "y"])]
    assert r.port.told == [("assign", "a", "x", True), ("assign", "a", "y", False)]
    assert events == []
    assert r.term.view().claims[K("x")].fence == 101


def test_an_assignment_whose_claim_conflicts_is_rejected_and_its_record_reread() -> None:
    r = rig("x")
    r.store.conflicts = {K("x")}
    events = r.run(AssignTask(K("x"), "a", 1, True))
    assert r.store.calls == [("create", ["x"]), ("read", ["x"])]
    assert r.port.told == []
    assert events == [AssignRejected(K("x"), "a", 1000.0)]


def test_an_assignment_blocked_by_another_agents_claim_waits_for_that_claim() -> None:
    r = rig("x", claims=[Claim(K("x"), "b", 1, fence=20, mod_revision=20, lease_id=12)])
    r.store.conflicts = {K("x")}
    assert r.run(AssignTask(K("x"), "a", 1, True)) == []
    assert r.executor.unpark(K("x")) == AssignRejected(K("x"), "a", 1000.0)
    assert r.executor.unpark(K("x")) is None


def test_an_assignment_to_an_agent_without_a_lease_is_rejected_without_a_write() -> None:
    r = rig("x")
    assert r.run(AssignTask(K("x"), "nobody", 1, True)) == [
        AssignRejected(K("x"), "nobody", 1000.0)
    ]
    assert r.store.calls == []


def test_a_start_is_granted_after_it_committed() -> None:
    r = rig("x", claims=[Claim(K("x"), "a", 1, fence=20, mod_revision=20, lease_id=11)])
    assert r.run(StartTask(K("x"), "a", 1)) == []
    assert r.store.calls == [("start", ["x"])]
    assert r.port.told == [("grant", "a", "x", None)]
    assert r.term.view().claims[K("x")].started


def test_a_steal_revokes_the_victims_copy_then_starts_and_assigns_the_thiefs() -> None:
    r = rig("x", claims=[Claim(K("x"), "a", 1, fence=20, mod_revision=20, lease_id=11)])
    assert r.run(StealTask(K("x"), "a", "b", 1, True)) == []
    assert r.store.calls == [("steal", ["x"]), ("start", ["x"])]
    assert r.port.told == [("revoke", "a", "x", "stolen by b"), ("assign", "b", "x", True)]


def test_a_requeue_writes_the_attempt_the_scheduler_decided() -> None:
    r = rig("x")
    assert r.run(RequeueTask(K("x"), 1, "claim lost")) == []
    assert r.store.calls == [("requeue attempts", ["1"]), ("requeue", ["x"])]
    rec = r.term.view().tasks[K("x")]
    assert (rec.state, rec.attempt, rec.mod_revision) == (TaskState.READY, 1, 101)


def test_requeues_commit_before_the_claims_of_the_same_turn() -> None:
    r = rig("x")
    r.run(AssignTask(K("x"), "a", 2, True), RequeueTask(K("x"), 2, "failed: exit 1"))
    assert [name for name, _ in r.store.calls] == ["requeue attempts", "requeue", "create"]


def test_a_final_failure_writes_the_result_and_revokes_the_holders_copy() -> None:
    claim = Claim(K("x"), "a", 1, fence=20, mod_revision=20, lease_id=11)
    r = rig("x", "y", claims=[claim])
    r.run(MarkTaskFailed(K("x"), 1, "boom"), CancelTask(K("y"), "dependency x failed"))
    assert r.store.calls == [("finish", ["x", "y"])]
    assert r.port.told == [("revoke", "a", "x", "boom")]
    mirror = r.term.view()
    assert mirror.results[K("x")].state is TaskState.FAILED
    assert mirror.results[K("y")].state is TaskState.CANCELLED
    assert K("x") not in mirror.claims


def test_a_write_refused_by_the_fence_stops_the_term() -> None:
    r = rig("x")
    r.store.not_leader = True
    with pytest.raises(NotLeading):
        r.run(AssignTask(K("x"), "a", 1, True))
    assert r.port.told == []


def _report(task: str, agent: str = "a", fence: int = 20, lease: int = 11) -> Report:
    return Report(agent, lease, TaskRef(K(task), fence, 1), ok=True, duration=0.1)


def test_a_success_the_mirror_vouches_for_goes_to_the_scheduler_before_it_commits() -> None:
    claim = Claim(K("x"), "a", 1, True, fence=20, mod_revision=20, lease_id=11)
    r = rig("x", claims=[claim])
    spec, rest = Completions(r.term).speculate(
        [_report("x"), _report("x", fence=19), _report("x", agent="b", lease=12)], 1000.0
    )
    assert [s.completion.key for s in spec] == [K("x")]
    assert [s.event.key for s in spec] == [K("x")]
    assert [(p.agent_id, p.ref.fence) for p in rest] == [("a", 19), ("b", 20)]


def test_a_speculated_completion_commits_with_the_claims_and_is_answered_before_they_go_out() -> (
    None
):
    claim = Claim(K("x"), "a", 1, True, fence=20, mod_revision=20, lease_id=11)
    r = rig("x", "y", claims=[claim])
    spec, _ = Completions(r.term).speculate([_report("x")], 1000.0)
    assert r.run(AssignTask(K("y"), "a", 1, True), completing=spec) == []
    assert r.store.calls[0] == ("complete and create", ["x"])
    assert [name for name, _ in r.store.calls].count("complete") == 0
    assert r.port.told == [("confirmed", "a", "x", True), ("assign", "a", "y", True)]


def test_a_speculated_completion_without_claims_commits_alone() -> None:
    claim = Claim(K("x"), "a", 1, True, fence=20, mod_revision=20, lease_id=11)
    r = rig("x", claims=[claim])
    spec, _ = Completions(r.term).speculate([_report("x")], 1000.0)
    assert r.run(completing=spec) == []
    assert r.store.calls == [("complete", ["x"])]
    assert r.port.told == [("confirmed", "a", "x", True)]


def test_a_completion_without_claims_is_not_committed_by_a_deposed_leader() -> None:
    # its successor's scheduler would never hear of it: the task would stay
    # running there forever
    claim = Claim(K("x"), "a", 1, True, fence=20, mod_revision=20, lease_id=11)
    r = rig("x", claims=[claim])
    r.store.not_leader = True
    with pytest.raises(NotLeading):
        asyncio.run(Completions(r.term).commit([_report("x")], 1000.0))
    assert r.port.told == []


def test_a_chained_success_commits_only_with_or_after_its_dependencys() -> None:
    chained = Claim(K("y"), "a", 1, True, fence=20, mod_revision=20, lease_id=11, after=("x",))
    x_claim = Claim(K("x"), "a", 1, True, fence=20, mod_revision=20, lease_id=11)
    r = rig("x", claims=[chained])
    y = TaskRecord(K("y"), TaskSpec(id="y", depends_on=("x",)), TaskState.PENDING, 1, 20)
    r.term.view().fold_task(y)
    done = Completions(r.term)

    async def decide(*tasks: str) -> tuple[list[str], list[str], list[str]]:
        again: list[Report] = []
        spec, rest = done.in_order(
            *done.speculate([_report(t) for t in tasks], 1000.0), again.append, 0.0
        )
        await asyncio.sleep(0.01)  # what waits for a delay is handed back too
        return (
            [s.report.ref.key.task for s in spec],
            [p.ref.key.task for p in rest],
            [p.ref.key.task for p in again],
        )

    # x's report cannot be speculated (no claim in the mirror): y waits a turn
    assert asyncio.run(decide("x", "y")) == ([], ["x"], ["y"])
    assert asyncio.run(decide("y")) == ([], [], ["y"])  # x not reported yet: after a delay
    r.term.view().fold_claim(x_claim)  # both speculated: committed together
    assert asyncio.run(decide("x", "y")) == (["x", "y"], [], [])
    r.term.view().fold_result(TaskResult(K("x"), TaskState.SUCCEEDED, "a", 1), 30)
    assert asyncio.run(decide("y")) == (["y"], [], [])


def test_a_success_without_a_chained_claim_is_decided_at_once() -> None:
    r = rig("x", "y")
    again: list[Report] = []
    done = Completions(r.term)
    spec, rest = done.in_order(*done.speculate([_report("x")], 1.0), again.append, 0.0)
    assert (spec, [p.ref.key.task for p in rest], again) == ([], ["x"], [])


def test_a_chained_claim_is_counted_apart_and_its_record_left_pending() -> None:
    r = rig("x")
    y = TaskRecord(K("y"), TaskSpec(id="y", depends_on=("x",)), TaskState.PENDING, 1, 20)
    r.term.view().fold_task(y)
    chained = METRICS.assignments.labels("chained")
    before = chained._value.get()
    assert r.run(AssignTask(K("y"), "a", 1, True, after=("x",))) == []
    assert chained._value.get() == before + 1
    assert r.term.view().claims[K("y")].after == ("x",)
    assert r.term.view().tasks[K("y")].state is TaskState.PENDING
    assert r.port.told == [("assign", "a", "y", True)]
