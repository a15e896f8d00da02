"""``timeout`` and ``retry_backoff`` (issue 17): read from a project file with
project-level defaults, refused with a specific error when bad, and carried
unchanged through the etcd codec and the client proto."""

from __future__ import annotations

from typing import Any

import pytest

from workhive.coordinator.etcd.codec import decode_task, encode_task
from workhive.coordinator.etcd.types import KeyValue, TaskRecord
from workhive.coordinator.model import RetryBackoff, TaskKey, TaskSpec, TaskState
from workhive.coordinator.project_files import ProjectError, project_from_dict
from workhive.coordinator.service.convert import (
    addition_from_proto,
    project_from_proto,
    project_to_proto,
)
from workhive.v1 import client_pb2

DOC: dict[str, Any] = {
    "project": "p",
    "defaults": {"timeout": 30, "retry_backoff": {"base": 1, "cap": 60}},
    "tasks": [
        {"id": "a"},
        {"id": "b", "timeout": 2.5, "retry_backoff": {"base": 0.5, "cap": 4}},
    ],
}


def _error(**task: Any) -> ProjectError:
    with pytest.raises(ProjectError) as info:
        project_from_dict({"project": "p", "tasks": [{"id": "a", **task}]}, "t.yaml")
    return info.value


def test_project_defaults_apply_and_a_task_overrides_them() -> None:
    a, b = project_from_dict(DOC, "t.yaml").tasks
    assert (a.timeout, a.retry_backoff) == (30.0, RetryBackoff(1.0, 60.0))
    assert (b.timeout, b.retry_backoff) == (2.5, RetryBackoff(0.5, 4.0))


def test_without_the_fields_there_is_no_timeout_and_no_backoff() -> None:
    (a,) = project_from_dict({"project": "p", "tasks": [{"id": "a"}]}, "t.yaml").tasks
    assert (a.timeout, a.retry_backoff) == (None, None)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (-1, "-1 must be finite and >= 0"),
        (0, "must be > 0 seconds"),
        (10**9, "limit 604800"),
        ("1m", "must be a number of seconds, got str"),
        (True, "must be a number of seconds, got bool"),
    ],
)
def test_a_bad_timeout_is_refused_naming_the_field(value: Any, reason: str) -> None:
    err = _error(timeout=value)
    assert (err.task, err.field) == ("a", "timeout") and reason in err.reason


@pytest.mark.parametrize(
    ("value", "field", "reason"),
    [
        (5, "retry_backoff", "must be a mapping {base, cap} of seconds, got int"),
        ({"base": 1}, "retry_backoff.cap", "missing"),
        ({"base": 1, "cap": 2, "factor": 3}, "retry_backoff.factor", "unknown field"),
        ({"base": -1, "cap": 2}, "retry_backoff.base", "must be finite and >= 0"),
        ({"base": 1, "cap": 10**6}, "retry_backoff.cap", "limit 86400"),
        ({"base": 5, "cap": 2}, "retry_backoff", "cap 2 is below base 5"),
    ],
)
def test_a_malformed_backoff_is_refused_naming_the_field(
    value: Any, field: str, reason: str
) -> None:
    err = _error(retry_backoff=value)
    assert (err.task, err.field) == ("a", field) and reason in err.reason


def test_a_bad_default_is_refused_like_a_task_field() -> None:
    with pytest.raises(ProjectError) as info:
        project_from_dict(
            {"project": "p", "defaults": {"timeout": -3}, "tasks": [{"id": "a"}]}, "f"
        )
    assert info.value.field == "timeout" and "must be finite" in info.value.reason


def test_the_etcd_codec_round_trips_both_fields() -> None:
    spec = TaskSpec(id="a", timeout=2.5, retry_backoff=RetryBackoff(0.5, 4.0))
    rec = TaskRecord(key=TaskKey("p", "a"), spec=spec, state=TaskState.READY, attempt=2)
    back = decode_task(rec.key, KeyValue(b"k", encode_task(rec), 1, 1, 1, 0))
    assert back.spec == spec


def test_a_task_without_the_fields_is_stored_as_before() -> None:
    rec = TaskRecord(key=TaskKey("p", "a"), spec=TaskSpec(id="a"), state=TaskState.READY)
    assert encode_task(rec) == (
        b'{"attempt":1,"spec":{"id":"a","max_attempts":3,"priority":5},"state":"ready"}'
    )


def test_the_client_proto_round_trips_both_fields() -> None:
    spec = project_from_dict(DOC, "t.yaml")
    assert project_from_proto(project_to_proto(spec)).tasks == spec.tasks


def test_add_tasks_carries_and_validates_both_fields() -> None:
    ok = client_pb2.TaskSpec(
        id="n",
        timeout_seconds=1,
        retry_backoff=client_pb2.RetryBackoff(base_seconds=1, cap_seconds=8),
    )
    (spec,) = addition_from_proto("p", [ok]).tasks
    assert (spec.timeout, spec.retry_backoff) == (1.0, RetryBackoff(1.0, 8.0))
    bad = client_pb2.TaskSpec(id="n", timeout_seconds=-1)
    with pytest.raises(ProjectError) as info:
        addition_from_proto("p", [bad])
    assert info.value.field == "timeout"
