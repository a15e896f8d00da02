"""Pure translations between the etcd mirror and the scheduler's events."""

from __future__ import annotations

from collections import defaultdict

from workhive.coordinator.etcd import ClusterState, EventType, Keyspace, WatchBatch
from workhive.coordinator.etcd.codec import decode_claim
from workhive.coordinator.model import Claim, ProjectSpec, TaskKey
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


def new_projects(batch: WatchBatch, ks: Keyspace) -> set[str]:
    """Projects whose meta key appeared in ``batch``."""
    out = set()
    for ev in batch.events:
        if ev.type is EventType.PUT and ev.kv.version == 1:
            kind, parts = ks.classify(ev.kv.key)
            if kind == "meta":
                out.add(parts[0])
    return out


def deleted_claims(batch: WatchBatch, ks: Keyspace) -> list[Claim]:
    """Claims deleted in ``batch`` (with the value they had), in order."""
    out = []
    for ev in batch.events:
        if ev.type is EventType.DELETE and ev.prev is not None:
            kind, parts = ks.classify(ev.kv.key)
            if kind == "claim":
                out.append(decode_claim(TaskKey(parts[0], parts[1]), ev.prev))
    return out


def deleted_agents(batch: WatchBatch, ks: Keyspace) -> list[str]:
    out = []
    for ev in batch.events:
        if ev.type is EventType.DELETE:
            kind, parts = ks.classify(ev.kv.key)
            if kind == "agent":
                out.append(parts[0])
    return out
