"""Which projects retention deletes, how the mirror reports a deleted project,
and how the scheduler forgets it: pure, no etcd."""

from __future__ import annotations

from workhive.coordinator.etcd import (
    ClusterState,
    EventType,
    Keyspace,
    KeyValue,
    ProjectMeta,
    TaskRecord,
    WatchEvent,
)
from workhive.coordinator.etcd.codec import encode_meta, encode_result, encode_task
from workhive.coordinator.leader.retention import expired
from workhive.coordinator.model import ProjectSpec, TaskKey, TaskResult, TaskSpec, TaskState
from workhive.coordinator.scheduling import (
    ProjectCancelled,
    ProjectDeleted,
    ProjectSubmitted,
    SchedulerState,
)

KS = Keyspace("/ret/")


def _kv(key: bytes, value: bytes, rev: int) -> KeyValue:
    return KeyValue(key, value, rev, rev, 1)


def _mirror(finished_at: dict[str, float | None]) -> ClusterState:
    """One task per project: finished at the given time, or still ready (None)."""
    kvs = []
    rev = 0
    for pid, at in finished_at.items():
        key = TaskKey(pid, "t")
        rev += 1
        rec = TaskRecord(key, TaskSpec(id="t"), TaskState.READY)
        kvs.append(_kv(KS.task(key), encode_task(rec), rev))
        rev += 1
        kvs.append(_kv(KS.meta(pid), encode_meta(ProjectMeta(pid, 1, submitted_at=10.0)), rev))
        if at is not None:
            rev += 1
            res = TaskResult(key, TaskState.SUCCEEDED, "a", 1, finished_at=at)
            kvs.append(_kv(KS.result(key), encode_result(res), rev))
    return ClusterState.from_kvs(KS, rev, kvs)


def test_only_projects_finished_longer_ago_than_the_retention_expire() -> None:
    cs = _mirror({"old": 100.0, "recent": 195.0, "running": None})
    assert expired(cs, now=200.0, keep=60.0) == ["old"]
    assert expired(cs, now=300.0, keep=60.0) == ["old", "recent"]


def test_the_mirror_reports_a_deleted_project_and_forgets_its_keys() -> None:
    cs = _mirror({"gone": 100.0, "kept": 100.0})
    key = TaskKey("gone", "t")
    dels = [KS.task(key), KS.result(key), KS.meta("gone")]
    events = [WatchEvent(EventType.DELETE, KeyValue(k, b"", 0, 50, 0), None) for k in dels]
    changes = cs.apply(events)
    assert changes.deleted_projects == frozenset({"gone"})
    assert "gone" not in cs.projects and key not in cs.tasks and key not in cs.results
    assert not [k for k in cs.mods if k.startswith(KS.project_prefix("gone"))]
    assert "kept" in cs.projects


def test_the_scheduler_forgets_a_deleted_finished_project() -> None:
    s = SchedulerState()
    spec = ProjectSpec(id="p", tasks=(TaskSpec(id="t"),))
    s.handle(ProjectSubmitted(spec, 1.0), ProjectCancelled("p", "user", 2.0))
    assert s.handle(ProjectDeleted("p", 3.0)) == []
    assert "p" not in s.project_ids()


def test_the_scheduler_keeps_an_unfinished_project_it_is_told_was_deleted() -> None:
    s = SchedulerState()
    s.handle(ProjectSubmitted(ProjectSpec(id="p", tasks=(TaskSpec(id="t"),)), 1.0))
    s.handle(ProjectDeleted("p", 3.0))
    assert s.project_ids() == ["p"]
