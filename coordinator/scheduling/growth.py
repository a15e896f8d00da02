"""Growing a running project: validating a batch of new tasks against the
whole graph, and updating the graph analysis incrementally
(docs/scheduling.md, "Growing a project").

Contract of :func:`check_addition` (pure; raises ``ProjectError`` naming the
task and field, so the caller writes nothing):

- the batch is non-empty and small enough for one etcd txn (``MAX_ADD_OPS``);
- new ids are unique in the batch and unknown to the project;
- every dependency names an existing task or one of the batch; none names a
  failed or cancelled task;
- ``blocks`` names existing tasks that have not started (pending or ready,
  unclaimed): they now also wait for the new task;
- no cycle, through existing tasks included (the message prints its path).

Contract of :func:`extend_analysis`: appends the new tasks (indexes follow
the existing ones) and raises ranks and top levels only where they change,
walking the ancestors (ranks) and descendants (top levels) of what was
added: no full recompute, whatever the project's size. A rank never drops
when tasks are added.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from workhive.coordinator.model import TaskSpec, TaskState
from workhive.coordinator.scheduling.graph import GraphAnalysis, topological_order
from workhive.coordinator.task_schema import ProjectError, task_from_dict

MAX_ADD_OPS = 120
"""Writes one batch may cost: one per new task, two per ``blocks`` edge."""
_DEAD = (TaskState.FAILED, TaskState.CANCELLED)
_UNSTARTED = (TaskState.PENDING, TaskState.READY)


@dataclass(frozen=True, slots=True)
class Addition:
    """New tasks for ``project_id``; ``blocks[new id]``: existing unstarted
    tasks that now also depend on it."""

    project_id: str
    tasks: tuple[TaskSpec, ...]
    blocks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def blocked_deps(self) -> dict[str, list[str]]:
        """Existing task id -> the new ids it now also waits for."""
        out: dict[str, list[str]] = {}
        for t in self.tasks:
            for x in self.blocks.get(t.id, ()):
                out.setdefault(x, []).append(t.id)
        return out


def addition_from_dicts(project_id: str, raws: Any, source: str) -> Addition:
    """New tasks given as task objects (a project file's task fields plus
    ``blocks``), each validated on its own; raises ``ProjectError``."""
    if not isinstance(raws, list) or not raws:
        raise ProjectError("must be a non-empty list of tasks", file=source, field="tasks")
    specs: list[TaskSpec] = []
    blocks: dict[str, tuple[str, ...]] = {}
    for i, raw in enumerate(raws):
        raw = dict(raw) if isinstance(raw, Mapping) else raw
        b = raw.pop("blocks", ()) if isinstance(raw, dict) else ()
        spec = task_from_dict(raw, i, source)
        b = [b] if isinstance(b, str) else b
        if not isinstance(b, list | tuple) or not all(isinstance(x, str) for x in b):
            raise ProjectError(
                "must be a list of task ids", file=source, task=spec.id, field="blocks"
            )
        specs.append(spec)
        if b:
            blocks[spec.id] = tuple(dict.fromkeys(b))
    return Addition(project_id, tuple(specs), blocks)


def check_addition(
    add: Addition,
    spec_of: Callable[[str], TaskSpec | None],
    state_of: Callable[[str], TaskState | None],
    source: str = "<request>",
) -> None:
    """Refuse a batch that breaks a rule of the module docstring; the
    project's tasks are looked up one by one (``spec_of``, ``state_of``)."""
    if not add.tasks:
        raise ProjectError("must be a non-empty list", file=source, field="tasks")
    ops = len(add.tasks) + 2 * sum(len(v) for v in add.blocks.values())
    if ops > MAX_ADD_OPS:
        raise ProjectError(
            f"batch of {len(add.tasks)} tasks and "
            f"{sum(len(v) for v in add.blocks.values())} blocks edges is too large for one "
            f"transaction (limit {MAX_ADD_OPS} writes: a task costs 1, a blocks edge 2)",
            file=source,
            field="tasks",
        )
    new: dict[str, TaskSpec] = {}
    for t in add.tasks:
        if t.id in new:
            raise ProjectError("duplicate task id in the batch", file=source, task=t.id, field="id")
        if spec_of(t.id) is not None:
            raise ProjectError(
                f"task id already exists in project {add.project_id!r}",
                file=source,
                task=t.id,
                field="id",
            )
        new[t.id] = t
    for t in add.tasks:
        for d in t.depends_on:
            if d == t.id:
                raise ProjectError(
                    f"cycle: {t.id} -> {t.id}", file=source, task=t.id, field="depends_on"
                )
            if d in new:
                continue
            if spec_of(d) is None:
                raise ProjectError(
                    f"unknown dependency {d!r}", file=source, task=t.id, field="depends_on"
                )
            st = state_of(d)
            if st in _DEAD:
                raise ProjectError(
                    f"depends on {d!r}, which is {st}", file=source, task=t.id, field="depends_on"
                )
        for x in add.blocks.get(t.id, ()):
            if x in new:
                raise ProjectError(
                    f"blocks {x!r} of the same batch: say it with {x!r}'s depends_on",
                    file=source,
                    task=t.id,
                    field="blocks",
                )
            if spec_of(x) is None:
                raise ProjectError(
                    f"blocks unknown task {x!r}", file=source, task=t.id, field="blocks"
                )
            st = state_of(x)
            if st not in _UNSTARTED:
                raise ProjectError(
                    f"blocks {x!r}, which has already started ({st})",
                    file=source,
                    task=t.id,
                    field="blocks",
                )
    cycle = _cycle(add, spec_of)
    if cycle:
        raise ProjectError(
            "cycle: " + " -> ".join(cycle), file=source, task=cycle[0], field="depends_on"
        )


def _cycle(add: Addition, spec_of: Callable[[str], TaskSpec | None]) -> list[str]:
    """A dependency cycle the batch would close, as ``a -> b -> ... -> a``
    (each depends on the next). Only ancestors of new tasks are walked: the
    existing graph is acyclic, so any new cycle runs through a new task."""
    new = {t.id: t for t in add.tasks}
    extra = add.blocked_deps()

    def deps(tid: str) -> Sequence[str]:
        if tid in new:
            return new[tid].depends_on
        spec = spec_of(tid)
        return (*(spec.depends_on if spec else ()), *extra.get(tid, ()))

    colour: dict[str, int] = {}  # 1: on the stack, 2: done
    for root in new:
        if colour.get(root):
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = [root]
        colour[root] = 1
        while stack:
            tid, i = stack[-1]
            ds = deps(tid)
            if i == len(ds):
                stack.pop()
                path.pop()
                colour[tid] = 2
                continue
            stack[-1] = (tid, i + 1)
            d = ds[i]
            c = colour.get(d, 0)
            if c == 1:
                return [*path[path.index(d) :], d]
            if c == 0:
                colour[d] = 1
                stack.append((d, 0))
                path.append(d)
    return []


def extend_analysis(
    an: GraphAnalysis,
    tasks: Sequence[TaskSpec],
    blocked: Mapping[str, Sequence[str]],
    weight_of: Callable[[TaskSpec], float],
) -> tuple[GraphAnalysis, set[int]]:
    """Add ``tasks`` (valid per :func:`check_addition`; ``blocked``: existing
    id -> new ids it now waits for) to ``an``: its lists grow in place; returns
    the grown analysis and the indexes of existing tasks whose rank changed."""
    base = len(an.ids)
    total = an.total_work
    for k, t in enumerate(tasks):
        an.index[t.id] = base + k
        an.ids.append(t.id)
        an.parents.append([])
        an.children.append([])
        w = float(weight_of(t))
        an.weight.append(w)
        an.rank.append(w)
        an.tlevel.append(0.0)
        an.descendants.append(0)
        total += w
    edges = [(an.index[d], base + k) for k, t in enumerate(tasks) for d in t.depends_on]
    edges += [(an.index[n], an.index[x]) for x, ns in blocked.items() for n in ns]
    for parent, child in edges:
        an.parents[child].append(parent)
        an.children[parent].append(child)
    new = range(base, base + len(tasks))
    # ranks: raise ancestors while they grow (a rank is weight + max child rank)
    changed: set[int] = set()
    todo = list(new)
    while todo:
        i = todo.pop()
        best = max((an.rank[c] for c in an.children[i]), default=0.0)
        r = an.weight[i] + best
        if r > an.rank[i] or i >= base:
            if r != an.rank[i] and i < base:
                changed.add(i)
            an.rank[i] = max(r, an.rank[i])
            todo.extend(an.parents[i])
    # top levels: push down from the new tasks and the newly blocked ones
    todo = [*new, *(an.index[x] for x in blocked)]
    while todo:
        i = todo.pop()
        tl = max((an.tlevel[p] + an.weight[p] for p in an.parents[i]), default=0.0)
        if tl > an.tlevel[i] or (i >= base and tl != an.tlevel[i]):
            an.tlevel[i] = tl
            todo.extend(an.children[i])
    for i in new:
        an.descendants[i] = len(an.children[i])
    cp = max(an.critical_path_length, *(an.rank[i] for i in [*new, *changed]))
    if blocked:  # a blocked task now comes after new ones: order again
        order = topological_order(an.parents, an.children)
    else:
        order = an.order
        order.extend(new)
    grown = replace(
        an, order=order, descendants_exact=False, critical_path_length=cp, total_work=total
    )
    return grown, changed
