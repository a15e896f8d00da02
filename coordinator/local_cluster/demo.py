"""The built-in demo project of ``workhive up``.

A few hundred tasks shaped like a real plan: a design phase, several feature
branches (each a chain of build steps fanning into tests), a GPU-only training
branch, high-priority security fixes (never stolen), and an integration and
release tail. Durations are at most a second; each task's payload carries the
``sleep`` the demo work command performs. Deterministic for a given seed.
"""

from __future__ import annotations

import random

from workhive.coordinator.model import AgentGroup, ProjectSpec, TaskSpec


def demo_project(seed: int = 7, branches: int = 8, depth: int = 6, fan: int = 4) -> ProjectSpec:
    """Build the demo DAG (about 300 tasks with the defaults)."""
    rng = random.Random(seed)
    tasks: list[TaskSpec] = []

    def add(tid: str, deps: tuple[str, ...] = (), **kw: object) -> str:
        sleep = round(rng.uniform(0.05, 1.0), 2)
        tasks.append(
            TaskSpec(
                id=tid,
                depends_on=deps,
                estimate=round(sleep * rng.uniform(0.7, 1.3), 2),
                duration=sleep,
                payload={"sleep": sleep},
                **kw,  # type: ignore[arg-type]
            )
        )
        return tid

    design = add("design", priority=9, kind="design")
    heads: list[str] = []
    for b in range(branches):
        branch = f"feature-{b}"
        prev = add(f"{branch}.spec", (design,), branch=branch, kind="spec")
        for step in range(depth):
            prev = add(f"{branch}.build-{step}", (prev,), branch=branch, kind="compile")
            tests = [
                add(f"{branch}.test-{step}-{i}", (prev,), branch=branch, kind="test", priority=3)
                for i in range(fan)
            ]
            if step == depth - 1:
                prev = add(f"{branch}.merge", tuple(tests), branch=branch, kind="merge")
        heads.append(prev)
    data = add("data.prepare", (design,), kind="data")
    models = [
        add(f"ml.train-{i}", (data,), requires=frozenset({"gpu"}), kind="train", branch="ml")
        for i in range(6)
    ]
    evaluation = add("ml.evaluate", tuple(models), kind="eval", branch="ml")
    fixes = [add(f"security.fix-{i}", (design,), priority=9, kind="fix") for i in range(10)]
    integration = add("integration", (*heads, evaluation, *fixes), priority=8, kind="integrate")
    smoke = [add(f"release.smoke-{i}", (integration,), kind="test") for i in range(8)]
    add("release", tuple(smoke), priority=10, kind="release")
    return ProjectSpec(
        id=f"demo-{seed}",
        tasks=tuple(tasks),
        agents=(AgentGroup(count=5), AgentGroup(count=1, capabilities=frozenset({"gpu"}))),
        source="<built-in demo>",
    )
