"""Project files (YAML or JSON) and wire dicts -> validated ``ProjectSpec``.

Contract: either a complete, valid ``ProjectSpec`` comes back or one
``ProjectError`` is raised naming the file, the task and the field at fault
(unknown dependency, cycle with its path, duplicate id, priority outside 0-10,
unknown field, wrong type, oversize payload). Nothing partial is ever returned.
Pure apart from ``load_project`` reading the one file it is given.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from workhive.coordinator.model import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PRIORITY,
    MAX_PAYLOAD_BYTES,
    MAX_PRIORITY,
    AgentGroup,
    ProjectSpec,
    TaskSpec,
)

__all__ = ["ProjectError", "load_project", "project_from_dict"]

MAX_LABEL_CHARS = 256  # kind, branch, each capability
MAX_REQUIRES = 32  # capabilities one task may require
MAX_PAYLOAD_DEPTH = 32  # JSON nesting of a payload
MAX_ATTEMPTS = 100
_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._:@+-]{0,199}$")
_TOP_FIELDS = frozenset({"project", "defaults", "tasks", "agents"})
_TASK_FIELDS = frozenset(
    {
        "id",
        "depends_on",
        "priority",
        "estimate",
        "kind",
        "branch",
        "requires",
        "payload",
        "max_attempts",
        "duration",
    }
)
_DEFAULT_FIELDS = frozenset({"max_attempts", "priority", "estimate", "kind", "branch", "requires"})
_AGENT_FIELDS = frozenset({"count", "capabilities", "slots"})


class ProjectError(ValueError):
    """A project file or wire spec was rejected.

    Attributes:
        file: the source (path or wire label) of the spec.
        task: the task id at fault, or ``None`` for project-level errors.
        field: the field at fault, or ``None``.
        reason: the bare reason without location.
    """

    def __init__(
        self, reason: str, *, file: str, task: str | None = None, field: str | None = None
    ) -> None:
        self.file = file
        self.task = task
        self.field = field
        self.reason = reason
        where = file or "<project>"
        if task is not None:
            where += f": task {task!r}"
        if field is not None:
            where += f": field {field!r}"
        super().__init__(f"{where}: {reason}")


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
    _no_unknown(data, _TOP_FIELDS, source, None)
    pid_raw = data.get("project", default_id)
    if pid_raw is None:
        raise ProjectError("missing project name", file=source, field="project")
    pid = _ident(pid_raw, source, None, "project")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise ProjectError("must be a mapping", file=source, field="defaults")
    _no_unknown(defaults, _DEFAULT_FIELDS, source, None, prefix="defaults.")
    raw_tasks = data.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise ProjectError("must be a non-empty list", file=source, field="tasks")
    tasks: list[TaskSpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_tasks):
        spec = _task(raw, i, defaults, source)
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


def _no_unknown(
    d: Mapping[Any, Any],
    allowed: frozenset[str],
    src: str,
    task: str | None,
    prefix: str = "",
) -> None:
    for k in d:
        if k not in allowed:
            raise ProjectError(
                f"unknown field (allowed: {', '.join(sorted(allowed))})",
                file=src,
                task=task,
                field=f"{prefix}{k}",
            )


def _ident(v: Any, src: str, task: str | None, field: str) -> str:
    if isinstance(v, bool) or not isinstance(v, str | int):
        raise ProjectError(
            f"must be a string, got {type(v).__name__}", file=src, task=task, field=field
        )
    s = str(v)
    if not _ID_RE.match(s):
        raise ProjectError(
            f"invalid id {_shown(s)} (letters, digits, '._:@+-', at most 200 chars)",
            file=src,
            task=task,
            field=field,
        )
    return s


def _shown(s: str, limit: int = 60) -> str:
    """``s`` quoted for an error message, cut to ``limit`` characters."""
    return repr(s) if len(s) <= limit else f"{s[:limit]!r}... ({len(s)} chars)"


def _depth(value: Any, limit: int, src: str, task: str, field: str) -> None:
    """Refuse JSON nested deeper than ``limit`` (iterative: no RecursionError)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list | tuple):
            if d > limit:
                raise ProjectError(
                    f"nested more than {limit} levels deep", file=src, task=task, field=field
                )
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))


def _int(v: Any, src: str, task: str | None, field: str, lo: int, hi: int | None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ProjectError(
            f"must be an integer, got {type(v).__name__}", file=src, task=task, field=field
        )
    if v < lo or (hi is not None and v > hi):
        rng = f"{lo}-{hi}" if hi is not None else f">= {lo}"
        raise ProjectError(f"{v} outside {rng}", file=src, task=task, field=field)
    return v


def _seconds(v: Any, src: str, task: str | None, field: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ProjectError(
            f"must be a number of seconds, got {type(v).__name__}", file=src, task=task, field=field
        )
    f = float(v)
    if not math.isfinite(f) or f < 0:
        raise ProjectError(f"{v} must be finite and >= 0", file=src, task=task, field=field)
    return f


def _str(v: Any, src: str, task: str | None, field: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise ProjectError(
            f"must be a string, got {type(v).__name__}", file=src, task=task, field=field
        )
    if len(v) > MAX_LABEL_CHARS:
        raise ProjectError(
            f"{len(v)} characters, limit {MAX_LABEL_CHARS}", file=src, task=task, field=field
        )
    return v


def _strset(v: Any, src: str, task: str | None, field: str) -> frozenset[str]:
    if v is None:
        return frozenset()
    if isinstance(v, str) or not isinstance(v, list | tuple):
        raise ProjectError(
            f"must be a list of strings, got {type(v).__name__}", file=src, task=task, field=field
        )
    if len(v) > MAX_REQUIRES:
        raise ProjectError(
            f"{len(v)} entries, limit {MAX_REQUIRES}", file=src, task=task, field=field
        )
    for x in v:
        if not isinstance(x, str):
            raise ProjectError(
                f"must be a list of strings, found {type(x).__name__}",
                file=src,
                task=task,
                field=field,
            )
        _str(x, src, task, field)
    return frozenset(v)


def task_from_dict(raw: Any, index: int, source: str) -> TaskSpec:
    """Validate one task on its own (its dependencies are checked by the
    caller: ``growth.check_addition`` for tasks added to a running project)."""
    return _task(raw, index, {}, source)


def _task(raw: Any, index: int, defaults: Mapping[str, Any], src: str) -> TaskSpec:
    if not isinstance(raw, Mapping):
        raise ProjectError(
            f"task #{index + 1} must be a mapping, got {type(raw).__name__}",
            file=src,
            field="tasks",
        )
    if "id" not in raw:
        raise ProjectError(f"task #{index + 1} has no id", file=src, field="id")
    tid = _ident(raw["id"], src, None, "id")
    _no_unknown(raw, _TASK_FIELDS, src, tid)

    def get(name: str) -> Any:
        return raw[name] if name in raw else defaults.get(name)

    deps_raw = raw.get("depends_on") or []
    if isinstance(deps_raw, str | int) and not isinstance(deps_raw, bool):
        deps_raw = [deps_raw]
    if not isinstance(deps_raw, list | tuple):
        raise ProjectError(
            f"must be a list of task ids, got {type(deps_raw).__name__}",
            file=src,
            task=tid,
            field="depends_on",
        )
    deps = tuple(dict.fromkeys(_ident(d, src, tid, "depends_on") for d in deps_raw))
    prio = get("priority")
    attempts = get("max_attempts")
    payload = raw.get("payload")
    if payload is not None:
        _depth(payload, MAX_PAYLOAD_DEPTH, src, tid, "payload")
        try:
            size = len(json.dumps(payload, separators=(",", ":")).encode())
        except (TypeError, ValueError) as exc:
            raise ProjectError(
                f"not JSON-serialisable: {exc}", file=src, task=tid, field="payload"
            ) from exc
        if size > MAX_PAYLOAD_BYTES:
            raise ProjectError(
                f"payload is {size} bytes of JSON, limit {MAX_PAYLOAD_BYTES}",
                file=src,
                task=tid,
                field="payload",
            )
    return TaskSpec(
        id=tid,
        depends_on=deps,
        priority=DEFAULT_PRIORITY
        if prio is None
        else _int(prio, src, tid, "priority", 0, MAX_PRIORITY),
        estimate=_seconds(get("estimate"), src, tid, "estimate"),
        kind=_str(get("kind"), src, tid, "kind"),
        branch=_str(get("branch"), src, tid, "branch"),
        requires=_strset(get("requires"), src, tid, "requires"),
        payload=payload,
        max_attempts=DEFAULT_MAX_ATTEMPTS
        if attempts is None
        else _int(attempts, src, tid, "max_attempts", 1, MAX_ATTEMPTS),
        duration=_seconds(raw.get("duration"), src, tid, "duration"),
    )


def _agents(raw: Any, src: str) -> tuple[AgentGroup, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ProjectError(f"must be a list, got {type(raw).__name__}", file=src, field="agents")
    out: list[AgentGroup] = []
    for i, g in enumerate(raw):
        if not isinstance(g, Mapping):
            raise ProjectError(f"agent group #{i + 1} must be a mapping", file=src, field="agents")
        _no_unknown(g, _AGENT_FIELDS, src, None, prefix=f"agents[{i}].")
        out.append(
            AgentGroup(
                count=_int(g.get("count", 1), src, None, f"agents[{i}].count", 1, None),
                capabilities=_strset(g.get("capabilities"), src, None, f"agents[{i}].capabilities"),
                slots=_int(g.get("slots", 1), src, None, f"agents[{i}].slots", 1, None),
            )
        )
    return tuple(out)
