"""Which projects are worth an exact plan: one whose tasks all start at once
on slots of their own gains nothing from one (the leader skips planning it)."""

from __future__ import annotations

from workhive.coordinator.model import AgentInfo, ProjectSpec, TaskSpec
from workhive.coordinator.scheduling import starts_at_once

AGENTS = [AgentInfo(id="a", slots=2), AgentInfo(id="b", slots=1)]


def _project(*tasks: TaskSpec) -> ProjectSpec:
    return ProjectSpec(id="p", tasks=tasks)


def test_independent_tasks_that_fit_the_slots_start_at_once() -> None:
    assert starts_at_once(_project(*(TaskSpec(id=f"t{i}") for i in range(3))), AGENTS)


def test_more_independent_tasks_than_slots_are_worth_planning() -> None:
    assert not starts_at_once(_project(*(TaskSpec(id=f"t{i}") for i in range(4))), AGENTS)


def test_a_dependency_makes_a_project_worth_planning() -> None:
    tasks = (TaskSpec(id="a"), TaskSpec(id="b", depends_on=("a",)))
    assert not starts_at_once(_project(*tasks), AGENTS)


def test_a_required_capability_makes_a_project_worth_planning() -> None:
    tasks = (TaskSpec(id="a", requires=frozenset({"gpu"})),)
    assert not starts_at_once(_project(*tasks), AGENTS)
