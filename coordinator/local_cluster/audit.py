"""Audit a finished run against the invariants of docs/design.md ("Rules that make it
correct"), from etcd's full history and the agents' execution logs.

Violations found:
- ``lost``: a task of a visible project has no result at the end;
- ``committed_twice``: a task's result was written more than once;
- ``early_start``: a task's claim was marked started (or an agent started it)
  before every dependency had a SUCCEEDED result, or its own success was
  committed before theirs. A chained claim (``Claim.after``, docs/scheduling.md
  "Chains run back to back") is started before the dependencies it names
  succeed; its run must then start on the same agent only after each of them
  ran there and finished successfully (execution logs);
- ``moved_started``: a started claim was handed to another agent (a task
  owned by two agents at once);
- ``deposed_writes``: a claim was written under a fencing term that was not
  the leader's at that revision (a write accepted from a deposed leader);
- ``executed_twice`` (agents' execution logs): a task started again although
  its previous run neither failed nor lost its agent first: the same claim
  (fence) started twice, or a new claim created while the lease of the claim
  that was running lived. Legitimate: a retry after a reported failure, a
  re-run after the first agent's lease ended (expired or revoked), and a
  re-run after the first agent's process died before its result committed
  (its agent id later logs from another process: a restart).
"""

from __future__ import annotations

import itertools
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
    chained: int = 0  # claims created started before their dependencies succeeded
    lost: list[str] = field(default_factory=list)
    committed_twice: list[str] = field(default_factory=list)
    early_start: list[str] = field(default_factory=list)
    moved_started: list[str] = field(default_factory=list)
    deposed_writes: list[str] = field(default_factory=list)
    executed_twice: list[str] = field(default_factory=list)
    executions: int = 0  # task starts in the agents' execution logs
    leases_ended: int = 0  # agent leases that expired or were revoked during the run

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
                "executed_twice": self.executed_twice,
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
    chained: dict[tuple[TaskKey, int], tuple[str, ...]] = {}  # (task, fence) -> after
    leases = _Leases()
    for ev in events:
        kind, parts = keyspace.classify(ev.key)
        leases.note(kind, parts, ev)
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
        if claim.after:
            chained.setdefault((key, claim.fence), claim.after)
        if claim.started:
            pid = key.project
            for d in deps.get(key, ()):
                if d in claim.after:
                    continue  # judged on the agent's execution log
                done = succeeded_at.get(TaskKey(pid, d))
                if done is None or done > ev.revision:
                    rep.early_start.append(f"{key} started at rev {ev.revision} before {d}")
    rep.chained = len(chained)
    keys = [k for k in deps if k.project in projects]
    rep.tasks = len(keys)
    rep.results = sum(1 for k in keys if result_puts[k])
    rep.requeued = sum(1 for k in keys if attempts.get(k, 1) > 1)
    rep.lost = sorted(str(k) for k in keys if not result_puts[k])
    rep.committed_twice = sorted(str(k) for k, n in result_puts.items() if n > 1)
    for key, rev in succeeded_at.items():
        for d in deps.get(key, ()):
            done = succeeded_at.get(TaskKey(key.project, d))
            if done is None or done > rev:
                rep.early_start.append(f"{key} succeeded at rev {rev} before {d}")
    if exec_log is not None and exec_log.exists():
        runs, seen = _read_runs(exec_log)
        rep.executions = sum(len(r) for r in runs.values())
        rep.early_start += _early_exec_starts(runs, deps, finished_at, chained)
        rep.executed_twice = _executed_twice(runs, seen, leases)
    rep.leases_ended = len(leases.ended_at)
    return rep


@dataclass
class _Run:
    """One execution of a task by an agent, from its execution log."""

    t: float
    agent: str
    fence: int
    pid: int = 0  # the agent's process
    failed: bool = False  # the run ended with a reported failure
    end: float | None = None  # when it finished (agent's clock), if it did


class _Leases:
    """Which lease each claim was on, and at which revision each lease ended.

    A lease's end is the deletion of its agent key (etcd expired or revoked
    the lease) or the agent key's re-registration under another lease (the
    old one is then revoked); a claim's lease is read from
    the claim's puts (a steal moves an unstarted claim to another lease)."""

    def __init__(self) -> None:
        self.claim_lease: dict[tuple[TaskKey, int, str], int] = {}
        self.ended_at: dict[int, int] = {}

    def note(self, kind: str, parts: tuple[str, ...], ev: WatchEvent) -> None:
        if kind == "claim" and ev.type is EventType.PUT and ev.kv.lease:
            agent = str(loads(ev.kv.value).get("agent", ""))
            key = TaskKey(parts[0], parts[1])
            self.claim_lease[(key, ev.kv.create_revision, agent)] = ev.kv.lease
        elif kind == "agent" and ev.type is EventType.DELETE and ev.prev and ev.prev.lease:
            self.ended_at.setdefault(ev.prev.lease, ev.revision)
        elif kind == "agent" and ev.prev and ev.prev.lease and ev.prev.lease != ev.kv.lease:
            # re-registered under a fresh lease (a restarted process): the
            # coordinator revokes the old one, so its claims may run again
            self.ended_at.setdefault(ev.prev.lease, ev.revision)

    def ended_before(self, key: TaskKey, run: _Run, revision: int) -> bool:
        """True if the lease ``run``'s claim was on ended before ``revision``."""
        lease = self.claim_lease.get((key, run.fence, run.agent))
        if lease is None:
            return True  # no such claim in etcd's history: cannot judge it
        end = self.ended_at.get(lease)
        return end is not None and end <= revision


def _read_runs(
    exec_log: Path,
) -> tuple[dict[TaskKey, list[_Run]], dict[str, list[tuple[float, int]]]]:
    """Each task's runs in start order (a failed ``finish`` marks its run
    failed), and each agent id's log lines as (time, process id)."""
    runs: dict[TaskKey, list[_Run]] = defaultdict(list)
    seen: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for line in exec_log.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        key = TaskKey(rec.get("project", ""), rec.get("task", ""))
        agent, pid, event = rec.get("agent", ""), int(rec.get("pid", 0)), rec.get("event")
        seen[agent].append((float(rec.get("t", 0.0)), pid))
        if event == "start":
            runs[key].append(_Run(float(rec["t"]), agent, int(rec.get("fence", 0)), pid))
        elif event == "finish":
            for run in reversed(runs.get(key, [])):
                if run.agent == agent and run.fence == int(rec.get("fence", 0)):
                    run.failed = rec.get("outcome") == "failed"
                    run.end = float(rec.get("t", 0.0))
                    break
    for r in runs.values():
        r.sort(key=lambda run: run.t)
    return runs, seen


def _process_died(run: _Run, seen: dict[str, list[tuple[float, int]]]) -> bool:
    """The run's agent process was replaced: its agent id logs later from
    another process. Its result, if it had one, died with it uncommitted (a
    committed result leaves no claim to run again)."""
    if not run.pid:
        return False
    return any(t > run.t and pid and pid != run.pid for t, pid in seen.get(run.agent, ()))


def _early_exec_starts(
    runs: dict[TaskKey, list[_Run]],
    deps: dict[TaskKey, tuple[str, ...]],
    finished_at: dict[TaskKey, float],
    chained: dict[tuple[TaskKey, int], tuple[str, ...]],
) -> list[str]:
    """Runs that started before a dependency succeeded: its committed
    success (leader's clock, ``START_SKEW`` allowed), or for a dependency a
    chained claim named, a successful run of it on the same agent that had
    finished (the agent's own clock)."""
    out = []
    for key, task_runs in runs.items():
        run = min(task_runs, key=lambda r: r.t)
        after = chained.get((key, run.fence), ())
        for d in deps.get(key, ()):
            dk = TaskKey(key.project, d)
            done = finished_at.get(dk)
            if done is None:
                out.append(f"{key} ran (agent log), {d} never succeeded")
            elif d in after:
                if not _ran_here_before(runs.get(dk, ()), run):
                    out.append(f"{key} ran (agent log) chained before {d} succeeded there")
            elif run.t + START_SKEW < done:
                out.append(f"{key} ran (agent log) before {d} succeeded")
    return out


def _ran_here_before(dep_runs: list[_Run] | tuple[()], run: _Run) -> bool:
    """A successful run on ``run``'s agent process finished by ``run``'s start."""
    return any(
        r.agent == run.agent
        and r.pid == run.pid
        and not r.failed
        and r.end is not None
        and r.end <= run.t
        for r in dep_runs
    )


def _executed_twice(
    runs: dict[TaskKey, list[_Run]], seen: dict[str, list[tuple[float, int]]], leases: _Leases
) -> list[str]:
    out = []
    for key, task_runs in runs.items():
        for prev, run in itertools.pairwise(task_runs):
            if prev.failed:
                continue  # a retry after a reported failure
            if run.fence == prev.fence:
                out.append(f"{key}: claim {run.fence} started twice (on {run.agent})")
            elif not leases.ended_before(key, prev, run.fence) and not _process_died(prev, seen):
                out.append(
                    f"{key}: ran on {prev.agent} (claim {prev.fence}) and again on "
                    f"{run.agent} (claim {run.fence}) while the first lease lived"
                )
    return out
