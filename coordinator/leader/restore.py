"""Pure translations from the etcd mirror to the scheduler's inputs.

What a watch batch changed is the mirror's own answer (``ClusterState.apply``
returns it); this module only builds specs and the restore event from a
mirror, without changing it.
"""

from __future__ import annotations

from collections import defaultdict

from workhive.coordinator.etcd import ClusterState
from workhive.coordinator.model import ProjectSpec, TaskKey
from workhive.coordinator.scheduling import StateRestored


def project_specs(cs: ClusterState, only: set[str] | None = None) -> list[ProjectSpec]:
    """The visible projects of the mirror as specs (tasks in key order)."""
    by_project: dict[str, list[TaskKey]] = defaultdict(list)
    for key in cs.tasks:
        if only is None or key.project in only:
            by_project[key.project].append(key)
    out = []
    for pid, meta in cs.projects.items():
        if only is not None and pid not in only:
            continue
        keys = sorted(by_project.get(pid, []), key=lambda k: k.task)
        out.append(
            ProjectSpec(id=pid, tasks=tuple(cs.tasks[k].spec for k in keys), source=meta.source)
        )
    return out


def restored(cs: ClusterState, now: float) -> StateRestored:
    """Everything a new leader must know, read at one revision."""
    return StateRestored(
        projects=project_specs(cs),
        claims=list(cs.visible_claims().values()),
        results=[r for k, r in cs.results.items() if k.project in cs.projects],
        agents=list(cs.agents.values()),
        now=now,
        attempts={k: r.attempt for k, r in cs.tasks.items()},
    )
