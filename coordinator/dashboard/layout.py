"""Static analysis of a project's DAG for drawing it (docs/dashboard.md, "Project").

Contract: :func:`layout` is pure and depends only on the task specs, which
never change after a submit, so callers compute it once per project.

- ``layer[t]`` = length of the longest dependency chain above ``t`` (roots 0):
  every edge points from a lower layer to a higher one.
- ``order`` lists the tasks layer by layer; within a layer by the mean
  position of their parents (one barycenter sweep), which keeps edges short.
- ``critical_path``: the chain with the largest sum of estimates (1 s for a
  task without one), from a root to a sink; ties broken by task id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from workhive.coordinator.model import TaskSpec

DEFAULT_ESTIMATE = 1.0


@dataclass(frozen=True)
class Layout:
    """Where each task goes in the drawing (see module docstring)."""

    layer: dict[str, int]
    order: list[str]
    children: dict[str, list[str]]
    critical_path: list[str]
    critical_seconds: float

    @property
    def layers(self) -> int:
        return 1 + max(self.layer.values(), default=-1)


def topological(tasks: Mapping[str, TaskSpec]) -> list[str]:
    """Task ids, parents before children (Kahn; unknown dependencies ignored)."""
    children: dict[str, list[str]] = {t: [] for t in tasks}
    missing = {t: 0 for t in tasks}
    for tid, spec in tasks.items():
        for d in spec.depends_on:
            if d in tasks:
                children[d].append(tid)
                missing[tid] += 1
    ready = sorted(t for t, n in missing.items() if n == 0)
    out: list[str] = []
    while ready:
        nxt: list[str] = []
        for t in ready:
            out.append(t)
            for c in children[t]:
                missing[c] -= 1
                if missing[c] == 0:
                    nxt.append(c)
        ready = sorted(nxt)
    return out


def layout(tasks: Mapping[str, TaskSpec]) -> Layout:
    """The drawing of a DAG (see module docstring)."""
    topo = topological(tasks)
    layer: dict[str, int] = {}
    finish: dict[str, float] = {}
    best_parent: dict[str, str | None] = {}
    for t in topo:
        deps = [d for d in tasks[t].depends_on if d in layer]
        layer[t] = 1 + max((layer[d] for d in deps), default=-1)
        parent = max(deps, key=lambda d: (finish[d], d), default=None)
        best_parent[t] = parent
        est = tasks[t].estimate
        finish[t] = (finish[parent] if parent else 0.0) + (
            est if est is not None and est > 0 else DEFAULT_ESTIMATE
        )
    by_layer: dict[int, list[str]] = {}
    for t in topo:
        by_layer.setdefault(layer[t], []).append(t)
    pos: dict[str, float] = {}
    order: list[str] = []
    for n in sorted(by_layer):
        row = by_layer[n]
        if n > 0:

            def bary(t: str) -> tuple[float, str]:
                ps = [pos[d] for d in tasks[t].depends_on if d in pos]
                return (sum(ps) / len(ps) if ps else 0.0, t)

            row = sorted(row, key=bary)
        for i, t in enumerate(row):
            pos[t] = i / max(1, len(row) - 1) if len(row) > 1 else 0.5
        order.extend(row)
    path: list[str] = []
    end = max(finish, key=lambda t: (finish[t], t), default=None)
    cur = end
    while cur is not None:
        path.append(cur)
        cur = best_parent[cur]
    path.reverse()
    children: dict[str, list[str]] = {t: [] for t in tasks}
    for t, spec in tasks.items():
        for d in spec.depends_on:
            if d in children:
                children[d].append(t)
    return Layout(
        layer=layer,
        order=order,
        children=children,
        critical_path=path,
        critical_seconds=finish[end] if end else 0.0,
    )
