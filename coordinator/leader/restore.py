"""Pure translations from the etcd mirror to the scheduler's inputs.

What a watch batch changed is the mirror's own answer (``ClusterState.apply``
returns it); this module only builds specs and the restore event from a
mirror, without changing it.
"""

from __future__ import annotations

from workhive.coordinator.etcd import ClusterState
from workhive.coordinator.model import ProjectSpec, TaskResult, TaskState
from workhive.coordinator.scheduling import Event, StateRestored, TaskFailed, TaskSucceeded


def project_specs(cs: ClusterState, only: set[str] | None = None) -> list[ProjectSpec]:
    """The visible projects of the mirror (those in ``only``, when given:
    without a scan of every task) as specs, tasks in key order."""
    if only is None:
        pids = list(cs.projects)
    else:  # in the order they were written, like the whole mirror's
        pids = sorted(
            (p for p in only if p in cs.projects), key=lambda p: cs.projects[p].mod_revision
        )
    out = []
    for pid in pids:
        keys = sorted(cs.task_keys(pid), key=lambda k: k.task)
        out.append(
            ProjectSpec(
                id=pid,
                tasks=tuple(cs.tasks[k].spec for k in keys),
                source=cs.projects[pid].source,
            )
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


def outcome(result: TaskResult, agent_id: str, now: float) -> Event | None:
    """The scheduler's event for a result it did not commit itself (one an
    earlier leader committed after the state this term restored): a success,
    a final failure, or None (a cancel: the scheduler decides those)."""
    if result.state is TaskState.SUCCEEDED:
        return TaskSucceeded(result.key, agent_id, result.duration, now)
    if result.state is TaskState.FAILED:
        return TaskFailed(result.key, agent_id, result.reason, False, now)
    return None
