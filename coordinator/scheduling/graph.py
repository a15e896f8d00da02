"""Linear-time DAG analysis of a project.

For each task (by index in ``ProjectSpec.tasks`` order):
- ``rank``: weighted upward rank = own predicted duration + the longest
  weighted path from it to an exit (its "bottom level");
- ``tlevel``: longest weighted path from an entry to its start;
- ``descendants``: number of tasks transitively depending on it. Exact (bitset
  union) for up to ``EXACT_DESCENDANTS_LIMIT`` tasks; above that an upper bound
  ``min(n - 1, sum(children's descendants + 1))``, exact on forests;
- ``blockers``: immediate dependencies (``parents``); ``children`` the reverse;
- critical-path membership: ``tlevel + rank == critical_path_length``.
All in O(tasks + edges) apart from the exact-descendants bitsets. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from workhive.coordinator.model import ProjectSpec, TaskSpec

__all__ = ["EXACT_DESCENDANTS_LIMIT", "GraphAnalysis", "analyse", "topological_order"]

EXACT_DESCENDANTS_LIMIT = 5000
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class GraphAnalysis:
    """Result of ``analyse``; lists are indexed like ``ProjectSpec.tasks``."""

    ids: list[str]
    index: dict[str, int]
    parents: list[list[int]]
    children: list[list[int]]
    order: list[int]
    weight: list[float]
    rank: list[float]
    tlevel: list[float]
    descendants: list[int]
    descendants_exact: bool
    critical_path_length: float
    total_work: float

    def on_critical_path(self, i: int) -> bool:
        """Whether task ``i`` lies on a longest weighted path."""
        return self.tlevel[i] + self.rank[i] >= self.critical_path_length - _EPS * max(
            1.0, self.critical_path_length
        )

    def critical_path(self) -> list[str]:
        """One longest weighted path, entry to exit, as task ids."""
        if not self.ids:
            return []
        cur = max(
            (i for i in range(len(self.ids)) if not self.parents[i]), key=lambda i: self.rank[i]
        )
        path = [cur]
        while self.children[cur]:
            cur = max(self.children[cur], key=lambda c: self.rank[c])
            path.append(cur)
        return [self.ids[i] for i in path]

    def lower_bound(self, lanes: int) -> float:
        """max(critical path, total work / lanes): no schedule on ``lanes``
        identical slots can be shorter."""
        return max(self.critical_path_length, self.total_work / max(1, lanes))


def topological_order(
    parents: Sequence[Sequence[int]], children: Sequence[Sequence[int]]
) -> list[int]:
    """Kahn's algorithm, stable in index order; raises ValueError on a cycle."""
    n = len(parents)
    indeg = [len(p) for p in parents]
    order = [i for i in range(n) if indeg[i] == 0]
    head = 0
    while head < len(order):
        i = order[head]
        head += 1
        for c in children[i]:
            indeg[c] -= 1
            if indeg[c] == 0:
                order.append(c)
    if len(order) != n:
        raise ValueError("dependency cycle")
    return order


def analyse(
    spec: ProjectSpec, durations: Callable[[TaskSpec], float] | Sequence[float] | None = None
) -> GraphAnalysis:
    """Analyse ``spec`` with per-task weights (default: estimate or 1.0)."""
    tasks = spec.tasks
    n = len(tasks)
    ids = [t.id for t in tasks]
    index = {tid: i for i, tid in enumerate(ids)}
    parents = [[index[d] for d in t.depends_on] for t in tasks]
    children: list[list[int]] = [[] for _ in range(n)]
    for i, ps in enumerate(parents):
        for p in ps:
            children[p].append(i)
    if durations is None:
        weight = [t.estimate if t.estimate is not None else 1.0 for t in tasks]
    elif callable(durations):
        weight = [float(durations(t)) for t in tasks]
    else:
        weight = [float(x) for x in durations]
    order = topological_order(parents, children)
    tlevel = [0.0] * n
    for i in order:
        end = tlevel[i] + weight[i]
        for c in children[i]:
            if end > tlevel[c]:
                tlevel[c] = end
    rank = [0.0] * n
    desc = [0] * n
    exact = n <= EXACT_DESCENDANTS_LIMIT
    bits: list[int] = [0] * n if exact else []
    for i in reversed(order):
        best = 0.0
        for c in children[i]:
            if rank[c] > best:
                best = rank[c]
        rank[i] = weight[i] + best
        if exact:
            b = 0
            for c in children[i]:
                b |= bits[c] | (1 << c)
            bits[i] = b
            desc[i] = b.bit_count()
        else:
            desc[i] = min(n - 1, sum(desc[c] + 1 for c in children[i]))
    cp = max(rank) if n else 0.0
    return GraphAnalysis(
        ids=ids,
        index=index,
        parents=parents,
        children=children,
        order=order,
        weight=weight,
        rank=rank,
        tlevel=tlevel,
        descendants=desc,
        descendants_exact=exact,
        critical_path_length=cp,
        total_work=sum(weight),
    )
