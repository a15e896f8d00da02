"""Generated task graphs for end-to-end tests (deterministic per seed)."""

from __future__ import annotations

import random
import shlex
from typing import Any

from workhive.coordinator.model import ProjectSpec, TaskSpec


def layered_dag(
    n: int = 200,
    *,
    seed: int = 1,
    width: int = 12,
    max_parents: int = 3,
    sleep: tuple[float, float] = (0.02, 0.12),
    project: str = "e2e",
    priority: int | None = None,
) -> ProjectSpec:
    """``n`` tasks in layers of up to ``width``; each task depends on 1..max_parents
    tasks of the previous layer. Payload ``{"sleep": s}`` for the sleep command."""
    rng = random.Random(seed)
    tasks: list[TaskSpec] = []
    prev: list[str] = []
    i = 0
    while i < n:
        layer = []
        for _ in range(min(width, n - i)):
            tid = f"t{i:04d}"
            parents = tuple(sorted(rng.sample(prev, min(len(prev), rng.randint(1, max_parents)))))
            s = round(rng.uniform(*sleep), 3)
            tasks.append(
                TaskSpec(
                    id=tid,
                    depends_on=parents if prev else (),
                    estimate=s,
                    duration=s,
                    priority=priority if priority is not None else rng.randint(0, 7),
                    payload={"sleep": s},
                )
            )
            layer.append(tid)
            i += 1
        prev = layer
    return ProjectSpec(id=project, tasks=tuple(tasks))


def independent(
    n: int, *, sleep: float, project: str, priority_of: dict[int, int] | None = None
) -> ProjectSpec:
    """``n`` independent tasks of equal duration (optional priorities by index)."""
    return ProjectSpec(
        id=project,
        tasks=tuple(
            TaskSpec(
                id=f"t{i:04d}",
                estimate=sleep,
                duration=sleep,
                priority=(priority_of or {}).get(i, 5),
                payload={"sleep": sleep},
            )
            for i in range(n)
        ),
    )


def chain(n: int, project: str, sleep: float = 0.005, **head: Any) -> ProjectSpec:
    """``n`` tasks ``s000``.., each depending on the one before; ``head``:
    fields of the first. Payload ``{"sleep": s}`` for the sleep command."""
    tasks = [
        TaskSpec(
            id=f"s{i:03d}",
            depends_on=(f"s{i - 1:03d}",) if i else (),
            estimate=sleep,
            payload={"sleep": sleep},
            **(head if i == 0 else {}),
        )
        for i in range(n)
    ]
    return ProjectSpec(id=project, tasks=tuple(tasks))


def failing_first_attempt(task_id: str, seconds: float = 0.3) -> str:
    """An agent ``--exec`` command: ``task_id``'s first attempt runs
    ``seconds`` and exits 3 (a retryable failure); everything else succeeds."""
    script = (
        f'[ "$WORKHIVE_TASK_ID" = {task_id} ] && [ "$WORKHIVE_ATTEMPT" = 1 ] '
        f"&& {{ sleep {seconds}; exit 3; }}; exit 0"
    )
    return f"sh -c {shlex.quote(script)}"
