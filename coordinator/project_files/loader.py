"""Project files (YAML or JSON) and wire dicts -> validated ``ProjectSpec``.

Contract: either a complete, valid ``ProjectSpec`` comes back or one
``ProjectError`` is raised naming the file, the task and the field at fault
(unknown dependency, cycle with its path, duplicate id, priority outside 0-10,
unknown field, wrong type, oversize payload). Nothing partial is ever returned.
Each task is validated by the one task schema (``task_schema``); this module
adds what concerns a whole project: its name, ``defaults``, duplicate ids,
dependencies, cycles and the simulation-only ``agents``. Pure apart from
``load_project`` reading the one file it is given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from workhive.coordinator.model import AgentGroup, ProjectSpec, TaskSpec
from workhive.coordinator.task_schema import (
    DEFAULT_FIELDS,
    ProjectError,
    ident,
    integer,
    labels,
    no_unknown,
    task_from_dict,
)

__all__ = ["ProjectError", "find_cycle", "load_project", "project_from_dict", "task_from_dict"]

_TOP_FIELDS = frozenset({"project", "defaults", "tasks", "agents"})
_AGENT_FIELDS = frozenset({"count", "capabilities", "slots"})


def load_project(path: str | Path) -> ProjectSpec:
    """Read and validate a YAML or JSON project file."""
    p = Path(path)
    src = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProjectError(f"cannot read file: {exc.strerror or exc}", file=src) from exc
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ProjectError(f"invalid JSON at line {exc.lineno}: {exc.msg}", file=src) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ProjectError(f"invalid YAML{line}: {exc}", file=src) from exc
    default_id = p.stem
    return project_from_dict(data, src, default_id=default_id)


def project_from_dict(data: Any, source: str, *, default_id: str | None = None) -> ProjectSpec:
    """Validate a decoded project document (from a file or the wire)."""
    if not isinstance(data, Mapping):
        raise ProjectError("a project must be a mapping with a 'tasks' list", file=source)
    no_unknown(data, _TOP_FIELDS, source, None)
    pid_raw = data.get("project", default_id)
    if pid_raw is None:
        raise ProjectError("missing project name", file=source, field="project")
    pid = ident(pid_raw, source, None, "project")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise ProjectError("must be a mapping", file=source, field="defaults")
    no_unknown(defaults, DEFAULT_FIELDS, source, None, prefix="defaults.")
    raw_tasks = data.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise ProjectError("must be a non-empty list", file=source, field="tasks")
    tasks: list[TaskSpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_tasks):
        spec = task_from_dict(raw, i, source, defaults)
        if spec.id in seen:
            raise ProjectError("duplicate task id", file=source, task=spec.id, field="id")
        seen.add(spec.id)
        tasks.append(spec)
    for t in tasks:
        for d in t.depends_on:
            if d not in seen:
                raise ProjectError(
                    f"unknown dependency {d!r}", file=source, task=t.id, field="depends_on"
                )
            if d == t.id:
                raise ProjectError(
                    f"cycle: {t.id} -> {t.id}", file=source, task=t.id, field="depends_on"
                )
    cycle = find_cycle(tasks)
    if cycle:
        raise ProjectError(
            "cycle: " + " -> ".join(cycle), file=source, task=cycle[0], field="depends_on"
        )
    agents = _agents(data.get("agents"), source)
    return ProjectSpec(id=pid, tasks=tuple(tasks), agents=agents, source=source)


def find_cycle(tasks: list[TaskSpec] | tuple[TaskSpec, ...]) -> list[str]:
    """Return one dependency cycle as a path ``[a, b, ..., a]`` (``a`` depends on
    ``b``...), or ``[]`` when the graph is acyclic. Iterative, linear time."""
    deps = {t.id: t.depends_on for t in tasks}
    color: dict[str, int] = {}  # 1 = on stack, 2 = done
    for root in deps:
        if color.get(root):
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = [root]
        color[root] = 1
        while stack:
            node, i = stack[-1]
            ds = deps[node]
            if i < len(ds):
                stack[-1] = (node, i + 1)
                nxt = ds[i]
                c = color.get(nxt, 0)
                if c == 1:
                    start = path.index(nxt)
                    return [*path[start:], nxt]
                if c == 0:
                    color[nxt] = 1
                    stack.append((nxt, 0))
                    path.append(nxt)
            else:
                color[node] = 2
                stack.pop()
                path.pop()
    return []


def _agents(raw: Any, src: str) -> tuple[AgentGroup, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ProjectError(f"must be a list, got {type(raw).__name__}", file=src, field="agents")
    out: list[AgentGroup] = []
    for i, g in enumerate(raw):
        if not isinstance(g, Mapping):
            raise ProjectError(f"agent group #{i + 1} must be a mapping", file=src, field="agents")
        no_unknown(g, _AGENT_FIELDS, src, None, prefix=f"agents[{i}].")
        out.append(
            AgentGroup(
                count=integer(g.get("count", 1), src, None, f"agents[{i}].count", 1, None),
                capabilities=labels(g.get("capabilities"), src, None, f"agents[{i}].capabilities"),
                slots=integer(g.get("slots", 1), src, None, f"agents[{i}].slots", 1, None),
            )
        )
    return tuple(out)
