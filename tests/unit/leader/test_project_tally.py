"""A project's status counts come from a tally the mirror keeps as it
changes (``etcd.project_tally``), not from a scan of the project's tasks;
after any history of records, claims, results and deletes, the tally equals
the counts computed from scratch (a PENDING task whose dependencies all
succeeded shows as READY)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from workhive.coordinator.etcd import ClusterState, Keyspace, TaskRecord
from workhive.coordinator.model import Claim, TaskKey, TaskResult, TaskSpec, TaskState

KS = Keyspace("/t/")


def _from_scratch(cs: ClusterState, pid: str) -> Counter[TaskState]:
    keys = cs.task_keys(pid)
    raw = {k: cs.state_of(k) for k in keys}
    shown: Counter[TaskState] = Counter()
    for k, st in raw.items():
        assert st is not None
        deps = cs.tasks[k].spec.depends_on
        if st is TaskState.PENDING and all(
            raw.get(TaskKey(pid, d)) is TaskState.SUCCEEDED for d in deps
        ):
            st = TaskState.READY
        shown[st] += 1
    return shown


def _record(pid: str, i: int, deps: tuple[str, ...], state: TaskState, rev: int) -> TaskRecord:
    spec = TaskSpec(f"t{i}", depends_on=deps, estimate=float(i))
    return TaskRecord(TaskKey(pid, f"t{i}"), spec, state, 1, mod_revision=rev)


def test_a_pending_task_shows_ready_once_its_dependencies_succeeded() -> None:
    cs = ClusterState(KS)
    cs.fold_task(_record("p", 0, (), TaskState.READY, 1))
    cs.fold_task(_record("p", 1, ("t0",), TaskState.PENDING, 2))
    assert cs.tally.counts("p") == Counter({TaskState.READY: 1, TaskState.PENDING: 1})
    cs.fold_result(TaskResult(TaskKey("p", "t0"), TaskState.SUCCEEDED), 3)
    assert cs.tally.counts("p") == Counter({TaskState.SUCCEEDED: 1, TaskState.READY: 1})
    assert cs.tally.work("p") == 1.0


def test_a_deleted_project_leaves_nothing_in_the_tally() -> None:
    cs = ClusterState(KS)
    cs.fold_task(_record("p", 0, (), TaskState.READY, 1))
    cs.fold_task(_record("p", 1, ("t0",), TaskState.PENDING, 2))
    for i in range(2):
        cs.note_delete(KS.task(TaskKey("p", f"t{i}")), 3)
    assert cs.tally.counts("p") == Counter() and cs.tally.work("p") == 0.0


@pytest.mark.parametrize("seed", range(40))
def test_the_tally_equals_the_counts_from_scratch_after_every_change(seed: int) -> None:
    rng = random.Random(seed)
    cs = ClusterState(KS)
    n = rng.randint(3, 12)
    for rev in range(1, 151):
        pid = rng.choice(["p", "q"])
        i = rng.randrange(n)
        key = TaskKey(pid, f"t{i}")
        move = rng.random()
        if move < 0.35:  # a record (new, rewritten with more dependencies, or a state change)
            deps = tuple(
                sorted({f"t{rng.randrange(n)}" for _ in range(rng.randint(0, 3))} - {key.task})
            )
            state = rng.choice([TaskState.PENDING, TaskState.READY, TaskState.FAILED])
            cs.fold_task(_record(pid, i, deps, state, rev))
        elif move < 0.55:
            cs.fold_claim(Claim(key, "a", 1, rng.random() < 0.5, fence=rev, mod_revision=rev))
        elif move < 0.65:
            cs.fold_release(key, rev)
        elif move < 0.85:
            state = rng.choice([TaskState.SUCCEEDED, TaskState.SUCCEEDED, TaskState.FAILED])
            cs.fold_result(TaskResult(key, state), rev)
        elif move < 0.92:
            cs.note_delete(KS.result(key), rev)
        else:
            cs.note_delete(KS.task(key), rev)
        for p in ("p", "q"):
            assert cs.tally.counts(p) == _from_scratch(cs, p), (seed, rev)
            work = sum(cs.tasks[k].spec.estimate or 0.0 for k in cs.task_keys(p))
            assert cs.tally.work(p) == pytest.approx(work)
