"""View models: a :class:`Snapshot` (plus what the tracker remembers) turned
into the JSON documents of ``/api/v1/`` (docs/dashboard.md, "API").

Pure functions, no I/O; they run on the dashboard's worker thread, never on
the event loop. States follow ``GetStatus``: a pending task whose parents
all succeeded counts as ready.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from workhive.coordinator.dashboard.layout import Layout
from workhive.coordinator.dashboard.snapshot import Snapshot
from workhive.coordinator.dashboard.tracker import Tracker
from workhive.coordinator.etcd import effective_state
from workhive.coordinator.model import TaskKey, TaskState

STATES = [s.value for s in TaskState]
OUTPUT_TAIL_CHARS = 8192
PAYLOAD_CHARS = 4096

States = dict[str, dict[str, TaskState]]  # project -> task id -> state


def project_states(snap: Snapshot, only: set[str] | None = None) -> States:
    """Effective state of every visible task, by project (as ``GetStatus``);
    ``only``: just these projects."""
    out: States = {pid: {} for pid in snap.projects if only is None or pid in only}
    for key, rec in snap.tasks.items():
        per = out.get(key.project)
        if per is not None:
            per[key.task] = effective_state(rec, snap.claims.get(key), snap.results.get(key))
    for pid, per in out.items():
        for tid, st in per.items():
            if st is TaskState.PENDING:
                deps = snap.tasks[TaskKey(pid, tid)].spec.depends_on
                if all(per.get(d) is TaskState.SUCCEEDED for d in deps):
                    per[tid] = TaskState.READY
    return out


def _diff(a: Mapping[TaskKey, object], b: Mapping[TaskKey, object]) -> list[TaskKey]:
    """Keys added, removed or with another value object from ``a`` to ``b``.

    Two copies of one mirror share key objects and keep insertion order, so
    while the orders agree a walk in step compares by identity without
    hashing a single key (a ``TaskKey`` hashes in Python: slow at 100k);
    once they part (a key deleted in the middle), set logic takes over."""
    out: list[TaskKey] = []
    n = 0
    for n, ((ka, va), (kb, vb)) in enumerate(zip(a.items(), b.items(), strict=False)):  # noqa: B007
        if ka is not kb:
            break
        if va is not vb:
            out.append(kb)
    else:
        n = min(len(a), len(b))
        longer = b if len(b) > len(a) else a
        out.extend(itertools.islice(longer, n, None))
        return out
    get = a.get
    out = [k for k, v in b.items() if get(k) is not v]
    out.extend(a.keys() - b.keys())
    return out


def changed_keys(prev: Snapshot, cur: Snapshot) -> set[TaskKey]:
    """Tasks whose record, claim or result differs between two snapshots
    (values are frozen: a change is a new object, so identity tells)."""
    out: set[TaskKey] = set()
    for a, b in (
        (prev.tasks, cur.tasks),
        (prev.claims, cur.claims),
        (prev.results, cur.results),
    ):
        out.update(_diff(a, b))
    return out


def update_states(
    snap: Snapshot,
    prev: States,
    changed: set[TaskKey],
    children: Callable[[str], Mapping[str, list[str]]],
) -> tuple[States, dict[str, set[str]]]:
    """``project_states(snap)`` computed from ``prev`` (the states of the
    snapshot ``changed`` was diffed against) in O(changes); also returns the
    tasks whose state was recomputed, by project."""
    fresh = {pid for pid in snap.projects if pid not in prev}
    out: States = project_states(snap, fresh) if fresh else {}
    touched: dict[str, set[str]] = {pid: set(per) for pid, per in out.items()}
    for pid in snap.projects:
        if pid not in fresh:
            out[pid] = dict(prev[pid])
            touched[pid] = set()
    crossed: list[TaskKey] = []
    for key in changed:
        per = out.get(key.project)
        rec = snap.tasks.get(key)
        if per is None or key.project in fresh:
            continue
        if rec is None:
            per.pop(key.task, None)
            continue
        old = per.get(key.task)
        new = effective_state(rec, snap.claims.get(key), snap.results.get(key))
        per[key.task] = new
        touched[key.project].add(key.task)
        if (old is TaskState.SUCCEEDED) != (new is TaskState.SUCCEEDED):
            crossed.append(key)
    for key in crossed:
        touched[key.project].update(children(key.project).get(key.task, ()))
    for pid, tids in touched.items():
        if pid in fresh:
            continue
        per = out[pid]
        for tid in tids:
            st = per.get(tid)
            if st is TaskState.PENDING or st is TaskState.READY:
                key = TaskKey(pid, tid)
                rec = snap.tasks[key]
                raw = effective_state(rec, snap.claims.get(key), snap.results.get(key))
                if raw is TaskState.PENDING and all(
                    per.get(d) is TaskState.SUCCEEDED for d in rec.spec.depends_on
                ):
                    raw = TaskState.READY
                per[tid] = raw
    return out, touched


def counts_of(states: Mapping[str, TaskState]) -> dict[str, int]:
    """Tasks per state, every state named (zeros included)."""
    c = Counter(states.values())
    return {s.value: c.get(s, 0) for s in TaskState}


def _leader(snap: Snapshot) -> dict[str, Any] | None:
    ld = snap.leader
    return None if ld is None else {"id": ld.id, "address": ld.address, "term": ld.term}


def project_summary(snap: Snapshot, pid: str, states: Mapping[str, TaskState]) -> dict[str, Any]:
    meta = snap.projects[pid]
    counts = counts_of(states)
    total = len(states)
    done = counts["succeeded"] + counts["failed"] + counts["cancelled"]
    return {
        "id": pid,
        "submitted_at": meta.submitted_at,
        "total": total,
        "counts": counts,
        "finished": bool(states) and done == total,
        "progress": done / total if total else 0.0,
    }


def status_view(snap: Snapshot, states: States, tracker: Tracker) -> dict[str, Any]:
    """``GET /api/v1/status``: projects, leader, replicas, agents, metrics."""
    running: Counter[str] = Counter()
    queued: Counter[str] = Counter()
    for c in snap.claims.values():
        (running if c.started else queued)[c.agent] += 1
    connected = snap.connected
    return {
        "revision": snap.revision,
        "taken_at": snap.taken_at,
        "served_by": {"id": snap.node_id, "source": snap.source},
        "leader": _leader(snap),
        "leader_changes": snap.leader_changes,
        "leader_history": list(tracker.leaders),
        "replicas": sorted(
            ({"id": c.id, "address": c.address, "term": c.term} for c in snap.candidates.values()),
            key=lambda r: r["term"],
        ),
        "projects": [
            project_summary(snap, pid, states[pid])
            for pid in sorted(snap.projects, key=lambda p: (snap.projects[p].submitted_at, p))
        ],
        "agents": {
            "registered": len(snap.agents),
            "connected": len(connected) if connected is not None else None,
            "slots": sum(a.slots for a in snap.agents.values()),
            "running": sum(running.values()),
            "queued": sum(queued.values()),
        },
        "metrics": dict(snap.metrics),
        "metrics_source": "leader" if snap.metrics else "mirror",
        "series": list(tracker.series),
    }


def task_row(
    snap: Snapshot, key: TaskKey, state: TaskState, tracker: Tracker, layout: Layout | None
) -> dict[str, Any]:
    """One task as the project page draws it."""
    rec = snap.tasks[key]
    claim = snap.claims.get(key)
    res = snap.results.get(key)
    start = end = None
    if res is not None and res.finished_at:
        end = res.finished_at
        start = end - res.duration if res.duration else end
    elif claim is not None and claim.started:
        start = tracker.started_at.get(key)
    return {
        "id": key.task,
        "state": state.value,
        "deps": list(rec.spec.depends_on),
        "layer": layout.layer.get(key.task, 0) if layout else 0,
        "agent": res.agent if res else claim.agent if claim else "",
        "attempt": res.attempt if res and res.attempt else rec.attempt,
        "start": start,
        "end": end,
        "priority": rec.spec.priority,
        "kind": rec.spec.kind,
        "branch": rec.spec.branch,
        "estimate": rec.spec.estimate,
    }


def project_view(
    snap: Snapshot,
    pid: str,
    states: States,
    tracker: Tracker,
    layout: Layout,
    rows: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """``GET /api/v1/projects/<pid>``: summary, every task, DAG layout, steals.
    ``rows``: the task rows already made (``task_row``), else made here."""
    if pid not in snap.projects:
        return None
    per = states[pid]
    if rows is None:
        rows = {
            tid: task_row(snap, TaskKey(pid, tid), st, tracker, layout) for tid, st in per.items()
        }
    return {
        **project_summary(snap, pid, per),
        "revision": snap.revision,
        "layers": layout.layers,
        "critical_path": layout.critical_path,
        "critical_seconds": layout.critical_seconds,
        "tasks": [rows[tid] for tid in layout.order if tid in rows],
        "steals": [
            {"at": s.at, "task": s.key.task, "from": s.from_agent, "to": s.to_agent}
            for s in tracker.steals
            if s.key.project == pid
        ],
    }


def project_delta(
    pid: str,
    before: Mapping[str, TaskState] | None,
    now: Mapping[str, TaskState],
    row: Callable[[str], dict[str, Any]],
    limit: int,
) -> dict[str, Any] | None:
    """Rows (``row(task id)``) of the tasks whose state changed since
    ``before``; ``None`` when more than ``limit`` changed (the page then
    re-reads the project)."""
    changed = [t for t, s in now.items() if before is None or before.get(t) is not s]
    if len(changed) > limit:
        return None
    return {"project": pid, "counts": counts_of(now), "tasks": [row(t) for t in changed]}


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else "…" + text[-n:]


def task_view(snap: Snapshot, pid: str, tid: str, states: States, tracker: Tracker) -> Any:
    """``GET /api/v1/projects/<pid>/tasks/<tid>``: spec, claim (fence), result
    (output tail), the claims this replica saw; ``None`` if unknown."""
    key = TaskKey(pid, tid)
    rec = snap.tasks.get(key)
    if rec is None or pid not in states:
        return None
    claim = snap.claims.get(key)
    res = snap.results.get(key)
    spec = rec.spec
    payload = None if spec.payload is None else _clip(repr(spec.payload), PAYLOAD_CHARS)
    children = sorted(
        k.task for k, r in snap.tasks.items() if k.project == pid and tid in r.spec.depends_on
    )
    return {
        "project": pid,
        "id": tid,
        "state": states[pid][tid].value,
        "attempt": rec.attempt,
        "spec": {
            "depends_on": list(spec.depends_on),
            "children": children,
            "priority": spec.priority,
            "estimate": spec.estimate,
            "kind": spec.kind,
            "branch": spec.branch,
            "requires": sorted(spec.requires),
            "max_attempts": spec.max_attempts,
            "payload": payload,
        },
        "claim": None
        if claim is None
        else {
            "agent": claim.agent,
            "attempt": claim.attempt,
            "started": claim.started,
            "fence": claim.fence,
            "lease_id": f"{claim.lease_id:x}" if claim.lease_id else "",
            "started_at": tracker.started_at.get(key),
            **_progress(snap, key, claim.fence),
        },
        "result": None
        if res is None
        else {
            "state": res.state.value,
            "agent": res.agent,
            "attempt": res.attempt,
            "reason": res.reason,
            "duration": res.duration,
            "finished_at": res.finished_at,
            "output_tail": _clip(res.output_tail, OUTPUT_TAIL_CHARS),
        },
        "history": list(tracker.history.get(key, ())),
    }


def agents_view(snap: Snapshot, lease_age: Callable[[int], float | None]) -> list[dict[str, Any]]:
    """``GET /api/v1/agents``: per agent, what it can do and what it holds."""
    running: dict[str, list[str]] = {}
    queued: dict[str, list[str]] = {}
    for key, c in snap.claims.items():
        if key.project in snap.projects:
            (running if c.started else queued).setdefault(c.agent, []).append(str(key))
    out = []
    for aid in sorted(snap.agents):
        a = snap.agents[aid]
        run = sorted(running.get(aid, []))
        que = sorted(queued.get(aid, []))
        out.append(
            {
                "id": aid,
                "capabilities": sorted(a.capabilities),
                "slots": a.slots,
                "prefetch": a.prefetch,
                "lease_id": f"{a.lease_id:x}" if a.lease_id else "",  # 64 bits: not a JS number
                "running": run,
                "queued": que,
                "busy": len(run) / a.slots if a.slots else 0.0,
                "load_seconds": snap.loads.get(aid),
                "speed_factor": snap.speeds.get(aid),
                "connected": None if snap.connected is None else aid in snap.connected,
                "last_keepalive_age": lease_age(a.lease_id) if a.lease_id else None,
            }
        )
    return out


def _progress(snap: Snapshot, key: TaskKey, fence: int) -> dict[str, Any]:
    """The running attempt's last progress report (leader only; else none)."""
    p = snap.progress.get(key)
    if p is None or p.fence != fence:
        return {"progress": None, "progress_note": ""}
    return {"progress": p.fraction, "progress_note": p.note}
