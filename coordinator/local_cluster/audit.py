"""Audit a finished run against the invariants of docs/design.md ("Rules that make it
correct"), from etcd's full history and the agents' execution logs.

Violations found:
- ``lost``: a task of a visible project has no result at the end;
- ``committed_twice``: a task's result was written more than once;
- ``early_start``: a task's claim was marked started (or an agent started it)
  before every dependency had a SUCCEEDED result;
- ``moved_started``: a started claim was handed to another agent (a task
  owned by two agents at once);
- ``deposed_writes``: a claim was written under a fencing term that was not
  the leader's at that revision (a write accepted from a deposed leader).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from workhive.coordinator.etcd import EventType, Keyspace, WatchEvent
from workhive.coordinator.etcd.codec import decode_claim, decode_result, decode_task, loads
from workhive.coordinator.model import TaskKey, TaskState

START_SKEW = 0.05  # seconds of clock tolerance between an agent and the leader


@dataclass
class AuditReport:
    tasks: int = 0
    results: int = 0
    terms: int = 0
    claim_writes: int = 0
    requeued: int = 0
    stolen: int = 0  # unstarted claims moved to another agent
    lost: list[str] = field(default_factory=list)
    committed_twice: list[str] = field(default_factory=list)
    early_start: list[str] = field(default_factory=list)
    moved_started: list[str] = field(default_factory=list)
    deposed_writes: list[str] = field(default_factory=list)

    @property
    def violations(self) -> dict[str, list[str]]:
        return {
            k: v
            for k, v in {
                "lost": self.lost,
                "committed_twice": self.committed_twice,
                "early_start": self.early_start,
                "moved_started": self.moved_started,
                "deposed_writes": self.deposed_writes,
            }.items()
            if v
        }

    @property
    def ok(self) -> bool:
        return not self.violations


def _leader_at(terms: list[tuple[int, int | None]], revision: int) -> int | None:
    """The term leading at ``revision``: lowest create revision of a live key."""
    live = [t for t, end in terms if t <= revision and (end is None or end > revision)]
    return min(live) if live else None


def audit(
    events: list[WatchEvent], keyspace: Keyspace, exec_log: Path | None = None
) -> AuditReport:
    """Check the invariants over a full history (revision 1 onwards)."""
    rep = AuditReport()
    terms: dict[bytes, tuple[int, int | None]] = {}
    deps: dict[TaskKey, tuple[str, ...]] = {}
    succeeded_at: dict[TaskKey, int] = {}
    finished_at: dict[TaskKey, float] = {}
    result_puts: Counter[TaskKey] = Counter()
    projects: set[str] = set()
    attempts: dict[TaskKey, int] = {}
    claim_puts: list[tuple[WatchEvent, TaskKey]] = []
    for ev in events:
        kind, parts = keyspace.classify(ev.key)
        if kind == "election":
            if ev.type is EventType.PUT and ev.kv.version == 1:
                terms[ev.key] = (ev.kv.create_revision, None)
            elif ev.type is EventType.DELETE and ev.key in terms:
                terms[ev.key] = (terms[ev.key][0], ev.revision)
        elif kind == "meta" and ev.type is EventType.PUT:
            projects.add(parts[0])
        elif kind == "task" and ev.type is EventType.PUT:
            key = TaskKey(parts[0], parts[1])
            rec = decode_task(key, ev.kv)
            deps[key] = rec.spec.depends_on
            attempts[key] = max(attempts.get(key, 1), rec.attempt)
        elif kind == "result" and ev.type is EventType.PUT:
            key = TaskKey(parts[0], parts[1])
            result_puts[key] += 1
            res = decode_result(key, ev.kv)
            if res.state is TaskState.SUCCEEDED:
                succeeded_at.setdefault(key, ev.revision)
                finished_at.setdefault(key, res.finished_at)
        elif kind == "claim" and ev.type is EventType.PUT:
            claim_puts.append((ev, TaskKey(parts[0], parts[1])))
    term_list = list(terms.values())
    rep.terms = len(term_list)
    rep.claim_writes = len(claim_puts)
    for ev, key in claim_puts:
        claim = decode_claim(key, ev.kv)
        term = int(loads(ev.kv.value).get("term", 0))
        leader = _leader_at(term_list, ev.revision)
        if term and term != leader:
            rep.deposed_writes.append(f"{key} claim at rev {ev.revision} by term {term}")
        if ev.prev is not None:
            prev = decode_claim(key, ev.prev)
            if prev.agent != claim.agent:
                rep.stolen += 1
                if prev.started:
                    rep.moved_started.append(
                        f"{key}: started on {prev.agent}, moved to {claim.agent}"
                    )
        if claim.started:
            pid = key.project
            for d in deps.get(key, ()):
                done = succeeded_at.get(TaskKey(pid, d))
                if done is None or done > ev.revision:
                    rep.early_start.append(f"{key} started at rev {ev.revision} before {d}")
    keys = [k for k in deps if k.project in projects]
    rep.tasks = len(keys)
    rep.results = sum(1 for k in keys if result_puts[k])
    rep.requeued = sum(1 for k in keys if attempts.get(k, 1) > 1)
    rep.lost = sorted(str(k) for k in keys if not result_puts[k])
    rep.committed_twice = sorted(str(k) for k, n in result_puts.items() if n > 1)
    if exec_log is not None and exec_log.exists():
        rep.early_start += _early_exec_starts(exec_log, deps, finished_at)
    return rep


def _early_exec_starts(
    exec_log: Path, deps: dict[TaskKey, tuple[str, ...]], finished_at: dict[TaskKey, float]
) -> list[str]:
    out = []
    starts: dict[TaskKey, list[float]] = defaultdict(list)
    for line in exec_log.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == "start":
            starts[TaskKey(rec.get("project", ""), rec.get("task", ""))].append(float(rec["t"]))
    for key, times in starts.items():
        for d in deps.get(key, ()):
            done = finished_at.get(TaskKey(key.project, d))
            if done is None or min(times) + START_SKEW < done:
                out.append(f"{key} ran (agent log) before {d} succeeded")
    return out
