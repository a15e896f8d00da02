"""Standard Task Graph (STG, Kasahara lab) files and their best known makespans.

Format (see ``data/stg/README.md``): line 1 is ``n``; then ``n + 2`` rows
``id cost npred pred...``; tasks ``0`` and ``n + 1`` are zero-cost dummies;
``#`` lines are comments. Tasks become ``TaskSpec`` with ``estimate`` and
``duration`` equal to the cost. Reading files is the only I/O here.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from workhive.coordinator.model import ProjectSpec, TaskSpec
from workhive.coordinator.task_schema import ProjectError

__all__ = ["BestKnown", "load_best_known", "load_stg", "parse_stg"]


@dataclass(frozen=True, slots=True)
class BestKnown:
    """Best known makespan of one (graph, processors) case.

    ``value`` is the proven optimum, or the best known upper bound when
    ``proven`` is false (then ``lower`` <= optimum <= ``value``).
    """

    value: int
    lower: int
    proven: bool


def parse_stg(text: str, source: str, project_id: str = "") -> ProjectSpec:
    """Parse STG text into a ``ProjectSpec`` (raises ``ProjectError``)."""
    rows: list[list[int]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        try:
            rows.append([int(x) for x in s.split()])
        except ValueError as exc:
            raise ProjectError(f"line {lineno}: not integers: {s[:60]!r}", file=source) from exc
    if not rows or len(rows[0]) != 1:
        raise ProjectError("first line must hold the task count", file=source)
    n = rows[0][0]
    body = rows[1:]
    if len(body) != n + 2:
        raise ProjectError(f"expected {n + 2} task rows, found {len(body)}", file=source)
    tasks: list[TaskSpec] = []
    for row in body:
        if len(row) < 3 or len(row) != 3 + row[2]:
            raise ProjectError(f"malformed row {row[:4]}...", file=source, task=str(row[0]))
        tid, cost, _np, *preds = row
        if any(p >= tid or p < 0 for p in preds):
            raise ProjectError(
                f"predecessor not before task (ids must be topological): {preds}",
                file=source,
                task=str(tid),
                field="depends_on",
            )
        tasks.append(
            TaskSpec(
                id=str(tid),
                depends_on=tuple(str(p) for p in preds),
                estimate=float(cost),
                duration=float(cost),
            )
        )
    pid = project_id or Path(source).stem
    return ProjectSpec(id=pid, tasks=tuple(tasks), source=source)


def load_stg(path: str | Path) -> ProjectSpec:
    """Read one ``.stg`` file."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except OSError as exc:
        raise ProjectError(f"cannot read file: {exc.strerror or exc}", file=str(path)) from exc
    return parse_stg(text, str(path))


def load_best_known(data_dir: str | Path) -> dict[tuple[str, int], BestKnown]:
    """``Optimal_values/*.csv`` -> {("50/rand0000.stg", P): BestKnown}."""
    out: dict[tuple[str, int], BestKnown] = {}
    for f in sorted(Path(data_dir, "Optimal_values").glob("*.csv")):
        with f.open(newline="") as fh:
            for row in csv.reader(fh):
                if not row:
                    continue
                name, procs = row[0].strip(), int(row[1])
                if len(row) == 3:
                    v = int(row[2])
                    out[(name, procs)] = BestKnown(value=v, lower=v, proven=True)
                else:
                    out[(name, procs)] = BestKnown(
                        value=int(row[3]), lower=int(row[2]), proven=False
                    )
    return out
