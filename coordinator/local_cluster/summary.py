"""The end-of-run summary of ``workhive up``: makespan against the lower
bound, steals, failovers, requeues, and the two numbers that must be zero."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from workhive.coordinator.model import ProjectSpec


def lower_bound(spec: ProjectSpec, total_slots: int) -> float:
    """max(critical path, total work / slots) with the tasks' real durations;
    linear in tasks + dependencies."""
    dur = {
        t.id: (t.duration if t.duration is not None else (t.estimate or 0.0)) for t in spec.tasks
    }
    tasks = spec.task_map()
    finish: dict[str, float] = {}
    for t in _topological(spec):
        finish[t] = dur[t] + max((finish[d] for d in tasks[t].depends_on), default=0.0)
    critical = max(finish.values(), default=0.0)
    return max(critical, sum(dur.values()) / max(1, total_slots))


def _topological(spec: ProjectSpec) -> list[str]:
    tasks = spec.task_map()
    indeg = {t: len(s.depends_on) for t, s in tasks.items()}
    children: dict[str, list[str]] = {t: [] for t in tasks}
    for t, s in tasks.items():
        for d in s.depends_on:
            children[d].append(t)
    order = [t for t, n in indeg.items() if n == 0]
    for t in order:
        for c in children[t]:
            indeg[c] -= 1
            if indeg[c] == 0:
                order.append(c)
    return order


@dataclass
class Summary:
    project: str
    tasks: int
    succeeded: int
    failed: int
    cancelled: int
    lost: int
    committed_twice: int
    executed_twice: int
    executions: int
    makespan_seconds: float
    lower_bound_seconds: float
    ratio: float
    steals: int
    leader_changes: int
    requeued: int
    agents: int
    coordinators: int
    chaos_events: list[str]
    violations: dict[str, list[str]]

    @property
    def ok(self) -> bool:
        return self.succeeded == self.tasks and not self.violations

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "ok": self.ok})
