"""Project file loader: valid files load; every bad input names file, task, field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workhive.coordinator.model import MAX_PAYLOAD_BYTES
from workhive.coordinator.project_files import ProjectError, load_project, project_from_dict

GOOD = """
project: website-rewrite
defaults: {max_attempts: 3, priority: 5}
tasks:
  - id: design
    estimate: 30
  - id: build-api
    kind: compile
    depends_on: [design]
    priority: 9
    branch: api
    requires: [python]
    payload: {ticket: 42}
    duration: 41.5
agents:
  - {count: 6}
  - {count: 2, capabilities: [gpu], slots: 1}
"""


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def err(tmp_path: Path, text: str, name: str = "p.yaml") -> ProjectError:
    with pytest.raises(ProjectError) as ei:
        load_project(write(tmp_path, text, name))
    return ei.value


def test_the_readme_example_loads_with_every_field(tmp_path: Path) -> None:
    spec = load_project(write(tmp_path, GOOD))
    assert spec.id == "website-rewrite"
    api = spec.task_map()["build-api"]
    assert api.depends_on == ("design",)
    assert api.priority == 9 and api.branch == "api" and api.kind == "compile"
    assert api.requires == frozenset({"python"}) and api.payload == {"ticket": 42}
    assert api.duration == 41.5 and api.estimate is None and api.max_attempts == 3
    assert [g.count for g in spec.agents] == [6, 2]
    assert spec.agents[1].capabilities == frozenset({"gpu"})


def test_json_file_loads(tmp_path: Path) -> None:
    doc = {"project": "j", "tasks": [{"id": "a"}, {"id": "b", "depends_on": ["a"]}]}
    spec = load_project(write(tmp_path, json.dumps(doc), "p.json"))
    assert [t.id for t in spec.tasks] == ["a", "b"]


def test_project_name_defaults_to_file_stem(tmp_path: Path) -> None:
    assert load_project(write(tmp_path, "tasks: [{id: a}]", "stem.yaml")).id == "stem"


def test_unknown_dependency_names_task_and_field(tmp_path: Path) -> None:
    e = err(tmp_path, "tasks: [{id: a, depends_on: [ghost]}]")
    assert (e.task, e.field) == ("a", "depends_on") and "ghost" in str(e)
    assert e.file.endswith("p.yaml") and "p.yaml" in str(e)


def test_cycle_prints_its_path(tmp_path: Path) -> None:
    e = err(
        tmp_path,
        "tasks: [{id: a, depends_on: [c]}, {id: b, depends_on: [a]}, {id: c, depends_on: [b]}]",
    )
    assert e.field == "depends_on"
    assert "a -> c -> b -> a" in str(e)


def test_self_dependency_is_a_cycle(tmp_path: Path) -> None:
    assert "cycle" in str(err(tmp_path, "tasks: [{id: a, depends_on: [a]}]"))


def test_duplicate_id(tmp_path: Path) -> None:
    e = err(tmp_path, "tasks: [{id: a}, {id: a}]")
    assert (e.task, e.field) == ("a", "id") and "duplicate" in str(e)


@pytest.mark.parametrize("prio", [-1, 11])
def test_priority_outside_0_10(tmp_path: Path, prio: int) -> None:
    e = err(tmp_path, f"tasks: [{{id: a, priority: {prio}}}]")
    assert (e.task, e.field) == ("a", "priority")


def test_unknown_task_field(tmp_path: Path) -> None:
    e = err(tmp_path, "tasks: [{id: a, estimte: 3}]")
    assert (e.task, e.field) == ("a", "estimte") and "unknown field" in str(e)


def test_unknown_top_level_field(tmp_path: Path) -> None:
    assert err(tmp_path, "tasks: [{id: a}]\nextra: 1").field == "extra"


def test_wrong_type(tmp_path: Path) -> None:
    e = err(tmp_path, "tasks: [{id: a, estimate: soon}]")
    assert (e.task, e.field) == ("a", "estimate") and "number" in str(e)


def test_requires_must_be_a_list(tmp_path: Path) -> None:
    assert err(tmp_path, "tasks: [{id: a, requires: gpu}]").field == "requires"


def test_oversize_payload(tmp_path: Path) -> None:
    doc = {"tasks": [{"id": "a", "payload": {"blob": "x" * MAX_PAYLOAD_BYTES}}]}
    e = err(tmp_path, json.dumps(doc), "p.json")
    assert (e.task, e.field) == ("a", "payload") and str(MAX_PAYLOAD_BYTES) in str(e)


def test_invalid_yaml_reports_line(tmp_path: Path) -> None:
    assert "line" in str(err(tmp_path, "tasks: [{id: a}\n  - :"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="cannot read"):
        load_project(tmp_path / "nope.yaml")


def test_project_from_dict_for_wire_specs() -> None:
    spec = project_from_dict({"project": "w", "tasks": [{"id": "a"}]}, "grpc:Submit")
    assert spec.source == "grpc:Submit" and spec.id == "w"
    with pytest.raises(ProjectError) as ei:
        project_from_dict({"project": "w", "tasks": []}, "grpc:Submit")
    assert ei.value.file == "grpc:Submit" and ei.value.field == "tasks"


def test_defaults_apply_unless_overridden(tmp_path: Path) -> None:
    spec = load_project(
        write(tmp_path, "defaults: {priority: 2, kind: k}\ntasks: [{id: a}, {id: b, priority: 7}]")
    )
    a, b = spec.tasks
    assert (a.priority, a.kind, b.priority, b.kind) == (2, "k", 7, "k")
