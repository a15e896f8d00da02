"""Every limit of a project spec is a clear error naming the task and field,
from a file's dict or from the wire (``project_from_proto``), never a crash."""

from __future__ import annotations

from typing import Any

import pytest

from workhive.coordinator.project_files import ProjectError, project_from_dict
from workhive.coordinator.service.convert import project_from_proto
from workhive.v1 import client_pb2


def _error(task: dict[str, Any]) -> ProjectError:
    with pytest.raises(ProjectError) as info:
        project_from_dict({"project": "p", "tasks": [{"id": "a", **task}]}, "t.yaml")
    return info.value


def _wire_error(**fields: Any) -> ProjectError:
    msg = client_pb2.ProjectSpec(project_id="p", tasks=[client_pb2.TaskSpec(id="a", **fields)])
    with pytest.raises(ProjectError) as info:
        project_from_proto(msg)
    return info.value


def test_a_payload_nested_too_deep_is_refused() -> None:
    deep: Any = 1
    for _ in range(500):
        deep = [deep]
    err = _error({"payload": deep})
    assert (err.task, err.field) == ("a", "payload") and "levels deep" in err.reason


def test_payload_json_nested_too_deep_over_the_wire_is_refused() -> None:
    err = _wire_error(payload_json="[" * 5000 + "]" * 5000)
    assert (err.task, err.field) == ("a", "payload")


def test_payload_json_that_is_not_json_is_refused() -> None:
    err = _wire_error(payload_json="{not json")
    assert err.field == "payload" and "not JSON" in err.reason


def test_a_huge_kind_is_refused() -> None:
    err = _error({"kind": "k" * (1024 * 1024)})
    assert err.field == "kind" and "limit 256" in err.reason


def test_max_attempts_has_an_upper_bound() -> None:
    err = _wire_error(max_attempts=4_000_000_000)
    assert err.field == "max_attempts"


def test_too_many_requirements_are_refused() -> None:
    err = _error({"requires": [f"cap{i}" for i in range(100_000)]})
    assert err.field == "requires" and "limit 32" in err.reason


def test_an_overlong_id_is_not_echoed_whole() -> None:
    with pytest.raises(ProjectError) as info:
        project_from_dict({"project": "p", "tasks": [{"id": "x" * 10_000}]}, "t.yaml")
    assert "(10000 chars)" in str(info.value) and len(str(info.value)) < 300
