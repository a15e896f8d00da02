"""The mirror finds a project's tasks without scanning every task (one small
project submitted at a time into a large mirror must stay cheap), and the
index, like its count of tasks by state, agrees with the tasks it holds
through puts, staged chunks, claims, results and deletes."""

from __future__ import annotations

from collections import Counter

import pytest

from workhive.coordinator.etcd import ClusterState, EtcdClient, Keyspace, snapshot, submit_project
from workhive.coordinator.leader.restore import project_specs
from workhive.coordinator.model import Claim, TaskKey, TaskResult, TaskState

from .helpers import make_project

pytestmark = pytest.mark.integration


def _mirror(client: EtcdClient, ks: Keyspace) -> ClusterState:
    rev, kvs = snapshot(client, ks.root)
    return ClusterState.from_kvs(ks, rev, kvs)


def test_a_projects_tasks_are_found_by_project(client: EtcdClient, ks: Keyspace) -> None:
    submit_project(client, ks, make_project("big", 30))
    submit_project(client, ks, make_project("small", 3, chain=True), max_ops=2)  # chunked
    cs = _mirror(client, ks)
    assert cs.task_keys("small") == {TaskKey("small", f"t{i}") for i in range(3)}
    assert len(cs.task_keys("big")) == 30 and cs.task_keys("nope") == set()
    (spec,) = project_specs(cs, {"small"})
    assert [t.id for t in spec.tasks] == ["t0", "t1", "t2"]
    assert spec.tasks[2].depends_on == ("t1",)


def test_a_deleted_task_leaves_the_index(client: EtcdClient, ks: Keyspace) -> None:
    submit_project(client, ks, make_project("p", 2))
    cs = _mirror(client, ks)
    cs.note_delete(ks.task(TaskKey("p", "t0")), cs.revision + 1)
    cs.note_delete(ks.task(TaskKey("p", "t1")), cs.revision + 1)
    assert cs.task_keys("p") == set() and "p" not in cs.by_project
    assert [s.tasks for s in project_specs(cs, {"p"})] == [()]


def test_tasks_by_state_are_counted_as_they_change(client: EtcdClient, ks: Keyspace) -> None:
    submit_project(client, ks, make_project("p", 3))
    cs = _mirror(client, ks)
    key = TaskKey("p", "t0")
    cs.fold_claim(Claim(key, "a", 1, fence=cs.revision + 1, mod_revision=cs.revision + 1))
    cs.fold_result(TaskResult(TaskKey("p", "t1"), TaskState.SUCCEEDED), cs.revision + 2)
    cs.note_delete(ks.task(TaskKey("p", "t2")), cs.revision + 3)
    scanned = Counter(st for k in cs.tasks if (st := cs.state_of(k)) is not None)
    assert +cs.state_counts == scanned == Counter({TaskState.ASSIGNED: 1, TaskState.SUCCEEDED: 1})
