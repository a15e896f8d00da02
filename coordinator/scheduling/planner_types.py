"""The ``Plan`` a planner hands to the state machine (pure data)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Plan", "PlannedTask"]


@dataclass(frozen=True, slots=True)
class PlannedTask:
    """Where and when the plan runs one task."""

    agent_id: str
    start: float
    finish: float


@dataclass(frozen=True, slots=True)
class Plan:
    """A schedule of one project on named agents.

    ``sequences[agent]`` lists the agent's tasks in the order it must start
    them (by planned start, ties in topological order). Followed strictly with
    exact durations, the real makespan is at most ``makespan``.
    ``optimal``: the solver proved no shorter schedule exists.
    """

    project_id: str
    tasks: Mapping[str, PlannedTask]
    sequences: Mapping[str, tuple[str, ...]]
    makespan: float
    lower_bound: float
    optimal: bool = False
    method: str = "heuristic"
    status: str = ""
