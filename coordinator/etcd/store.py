"""Reads and agent registration over the keyspace; the decoded cluster state.

Readers never see a project without its meta key (a submit in progress or a
killed one): :class:`ClusterState` drops tasks, claims and results of
projects without meta.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from workhive.coordinator.etcd import codec
from workhive.coordinator.etcd.client import EtcdClient, kv_from_pb, prefix_end
from workhive.coordinator.etcd.keys import Keyspace
from workhive.coordinator.etcd.project_tally import ProjectTally
from workhive.coordinator.etcd.txn import op_range
from workhive.coordinator.etcd.types import (
    Candidate,
    KeyValue,
    ProjectMeta,
    TaskRecord,
    effective_state,
)
from workhive.coordinator.etcd.watch import EventType, WatchEvent
from workhive.coordinator.model import AgentInfo, Claim, TaskKey, TaskResult, TaskState


@dataclass(frozen=True)
class MirrorChanges:
    """What a watch batch changed that the leader must act on."""

    new_projects: frozenset[str] = frozenset()  # meta key created
    deleted_claims: tuple[Claim, ...] = ()  # with the value they had, in order
    deleted_agents: tuple[str, ...] = ()  # registrations gone (lease expired)
    deleted_projects: frozenset[str] = frozenset()  # meta key deleted (workhive delete)


@dataclass
class ClusterState:
    """Everything under the prefix at ``revision``, decoded: the leader's
    in-memory mirror (and a follower's warm one).

    Contract: only this class's mutators change it: ``apply`` folds a watch
    batch in and returns what changed; the ``fold_*`` methods fold in a write
    the owner committed itself, before the watch echoes it (each change is
    kept only if it is at least as new as what is held, so the echo is a
    no-op). A fold marked ``exact`` holds exactly what the write stored (the
    etcd layer built both from the same values): the echo of that write is
    then not even decoded (``_exact``: key -> the revision folded; a key is
    written at most once per revision, so the revision names the write).
    Readers treat the fields as read-only.

    ``staged`` holds task records of projects whose meta is not written yet.
    """

    keyspace: Keyspace
    revision: int = 0
    projects: dict[str, ProjectMeta] = field(default_factory=dict)
    tasks: dict[TaskKey, TaskRecord] = field(default_factory=dict)
    claims: dict[TaskKey, Claim] = field(default_factory=dict)
    results: dict[TaskKey, TaskResult] = field(default_factory=dict)
    agents: dict[str, AgentInfo] = field(default_factory=dict)
    candidates: dict[str, Candidate] = field(default_factory=dict)
    # by project: task records of projects whose meta is not written yet
    staged: dict[str, dict[TaskKey, TaskRecord]] = field(default_factory=dict)
    mods: dict[bytes, int] = field(default_factory=dict)  # key -> last revision seen
    # the keys of ``tasks`` by project, kept by the mutators (a project's
    # tasks without a scan of every task: submits come one small project at a time)
    by_project: dict[str, set[TaskKey]] = field(default_factory=dict)
    # tasks by effective state, kept by the mutators (gauges without a scan)
    state_counts: Counter[TaskState] = field(default_factory=Counter)
    _states: dict[TaskKey, TaskState] = field(default_factory=dict)
    _exact: dict[bytes, int] = field(default_factory=dict)
    # per project: tasks by the state a client sees, and estimated work (status in O(1))
    tally: ProjectTally = field(init=False)

    def __post_init__(self) -> None:
        self.tally = ProjectTally(self._states)

    @classmethod
    def from_kvs(cls, keyspace: Keyspace, revision: int, kvs: Iterable[KeyValue]) -> ClusterState:
        st = cls(keyspace, revision)
        for kv in kvs:
            st._put(kv)
        return st

    def _newer(self, key: bytes, revision: int) -> bool:
        """False when a change at ``revision`` is older than what we hold
        (the owner folded its own txn result in before the watch echoed it)."""
        return self.mods.get(key, 0) <= revision

    def note_write(self, kv: KeyValue) -> None:
        """Fold in a put this process committed itself (before the watch echo)."""
        self._put(kv)

    def note_delete(self, key: bytes, revision: int) -> None:
        """Fold in a delete this process committed itself."""
        if self._newer(key, revision):
            self.mods[key] = revision
            self._delete(key)

    def _folded(self, key: bytes, revision: int, exact: bool) -> None:
        self.mods[key] = revision
        if exact:
            self._exact[key] = revision

    def fold_task(self, record: TaskRecord, *, exact: bool = False) -> None:
        """A task record this process wrote (at ``record.mod_revision``)."""
        key = self.keyspace.task(record.key)
        if self._newer(key, record.mod_revision):
            self._folded(key, record.mod_revision, exact)
            self._set_task(record)

    def _set_task(self, record: TaskRecord) -> None:
        self.tally.record_changed(self.tasks.get(record.key), record)
        self.tasks[record.key] = record
        self.by_project.setdefault(record.key.project, set()).add(record.key)
        self._restate(record.key)

    def _drop_task(self, key: TaskKey) -> None:
        old = self.tasks.pop(key, None)
        if old is not None:
            self.tally.record_changed(old, None)
            keys = self.by_project.get(key.project)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.by_project[key.project]
            self._restate(key)

    def _restate(self, key: TaskKey) -> None:
        """Keep ``state_counts`` after a change of the task, claim or result of ``key``."""
        old, new = self._states.get(key), self.state_of(key)
        if old is new:
            return
        if old is not None:
            self.state_counts[old] -= 1
        if new is None:
            del self._states[key]
        else:
            self._states[key] = new
            self.state_counts[new] += 1
        self.tally.state_changed(key, old, new)

    def task_keys(self, project_id: str) -> set[TaskKey]:
        """The keys of ``project_id``'s tasks held (read-only; no scan)."""
        return self.by_project.get(project_id, set())

    def fold_meta(self, meta: ProjectMeta) -> None:
        """A project meta this process wrote (at ``meta.mod_revision``)."""
        key = self.keyspace.meta(meta.id)
        if self._newer(key, meta.mod_revision):
            self.mods[key] = meta.mod_revision
            self.projects[meta.id] = meta

    def fold_claim(self, claim: Claim, *, exact: bool = False) -> None:
        """A claim this process created or changed (at ``claim.mod_revision``)."""
        key = self.keyspace.claim(claim.key)
        if self._newer(key, claim.mod_revision):
            self._folded(key, claim.mod_revision, exact)
            self.claims[claim.key] = claim
            self._restate(claim.key)

    def fold_result(self, result: TaskResult, revision: int, *, exact: bool = False) -> None:
        """A result this process wrote at ``revision``, in the txn that deleted
        the claim (if any)."""
        self.note_delete(self.keyspace.claim(result.key), revision)
        key = self.keyspace.result(result.key)
        if self._newer(key, revision):
            self._folded(key, revision, exact)
            self.results[result.key] = result
            self._restate(result.key)

    def fold_release(self, key: TaskKey, revision: int) -> None:
        """A claim this process deleted at ``revision``."""
        self.note_delete(self.keyspace.claim(key), revision)

    def _put(self, kv: KeyValue) -> None:
        if self._exact and self._exact.pop(kv.key, 0) == kv.mod_revision:
            return  # the echo of an exact fold: held already
        if not self._newer(kv.key, kv.mod_revision):
            return
        self.mods[kv.key] = kv.mod_revision
        kind, parts = self.keyspace.classify(kv.key)
        if kind == "meta":
            pid = parts[0]
            self.projects[pid] = codec.decode_meta(kv)
            for rec in self.staged.pop(pid, {}).values():
                self._set_task(rec)
        elif kind == "task":
            tk = TaskKey(parts[0], parts[1])
            rec = codec.decode_task(tk, kv)
            if tk.project in self.projects:
                self._set_task(rec)
            else:
                self.staged.setdefault(tk.project, {})[tk] = rec
        elif kind == "claim":
            tk = TaskKey(parts[0], parts[1])
            self.claims[tk] = codec.decode_claim(tk, kv)
            self._restate(tk)
        elif kind == "result":
            tk = TaskKey(parts[0], parts[1])
            self.results[tk] = codec.decode_result(tk, kv)
            self._restate(tk)
        elif kind == "agent":
            self.agents[parts[0]] = codec.decode_agent(kv)
        elif kind == "election":
            cid, addr = codec.decode_candidate(kv.value)
            self.candidates[parts[0]] = Candidate(cid, addr, kv.create_revision, kv.lease)

    def _delete(self, key: bytes) -> None:
        kind, parts = self.keyspace.classify(key)
        if kind == "meta":
            self.projects.pop(parts[0], None)
        elif kind == "task":
            tk = TaskKey(parts[0], parts[1])
            self._drop_task(tk)
            waiting = self.staged.get(tk.project)
            if waiting is not None:
                waiting.pop(tk, None)
                if not waiting:
                    del self.staged[tk.project]
        elif kind == "claim":
            tk = TaskKey(parts[0], parts[1])
            self.claims.pop(tk, None)
            self._restate(tk)
        elif kind == "result":
            tk = TaskKey(parts[0], parts[1])
            self.results.pop(tk, None)
            self._restate(tk)
        elif kind == "agent":
            self.agents.pop(parts[0], None)
        elif kind == "election":
            self.candidates.pop(parts[0], None)

    def apply(self, events: Iterable[WatchEvent]) -> MirrorChanges:
        """Fold watch events in, in order; returns what changed (one pass)."""
        fresh: set[str] = set()
        claims: list[Claim] = []
        agents: list[str] = []
        gone: set[str] = set()
        for ev in events:
            if ev.type is EventType.PUT:
                if ev.kv.version == 1:
                    kind, parts = self.keyspace.classify(ev.kv.key)
                    if kind == "meta":
                        fresh.add(parts[0])
                self._put(ev.kv)
            else:
                kind, parts = self.keyspace.classify(ev.kv.key)
                if kind == "claim" and ev.prev is not None:
                    claims.append(codec.decode_claim(TaskKey(parts[0], parts[1]), ev.prev))
                elif kind == "agent":
                    agents.append(parts[0])
                elif kind == "meta":
                    gone.add(parts[0])
                if self._newer(ev.kv.key, ev.revision):
                    self.mods[ev.kv.key] = ev.revision
                    self._delete(ev.kv.key)
            self.revision = max(self.revision, ev.revision)
        if gone:
            self._forget(gone)
        return MirrorChanges(frozenset(fresh), tuple(claims), tuple(agents), frozenset(gone))

    def _forget(self, projects: set[str]) -> None:
        """A deleted project leaves nothing behind, not even the revisions of
        its keys (a delete removes every key of the project in one revision,
        so no older write of it can still arrive)."""
        ks = self.keyspace
        prefixes = tuple(
            p for pid in projects for p in (ks.project_prefix(pid), ks.results_project_prefix(pid))
        )
        self.mods = {k: v for k, v in self.mods.items() if not k.startswith(prefixes)}
        self._exact = {k: v for k, v in self._exact.items() if not k.startswith(prefixes)}

    def visible_claims(self) -> dict[TaskKey, Claim]:
        return {k: c for k, c in self.claims.items() if k.project in self.projects}

    def unfinished(self, project_id: str, task_ids: Iterable[str]) -> tuple[str, ...]:
        """Those of ``task_ids`` (of ``project_id``) without a committed success."""
        results = self.results
        return tuple(
            t
            for t in task_ids
            if (r := results.get(TaskKey(project_id, t))) is None
            or r.state is not TaskState.SUCCEEDED
        )

    def state_of(self, key: TaskKey) -> TaskState | None:
        """Effective state of a task; None = unknown id (or project not visible)."""
        rec = self.tasks.get(key)
        if rec is None:
            return None
        return effective_state(rec, self.claims.get(key), self.results.get(key))

    def leader(self) -> Candidate | None:
        return min(self.candidates.values(), key=lambda c: c.term, default=None)


class Store:
    """Point reads and agent registration (not leader-fenced: any replica)."""

    def __init__(self, client: EtcdClient, keyspace: Keyspace) -> None:
        self.client = client
        self.ks = keyspace

    # agents
    def register_agent(self, info: AgentInfo, lease_id: int) -> int:
        """Put the agent's registration on its lease (idempotent). Returns the revision."""
        return self.client.put(self.ks.agent(info.id), codec.encode_agent(info), lease=lease_id)

    def unregister_agent(self, agent_id: str) -> None:
        self.client.delete(self.ks.agent(agent_id))

    def agents(self) -> list[AgentInfo]:
        _, kvs = self.client.get_prefix(self.ks.agents_prefix)
        return [codec.decode_agent(kv) for kv in kvs]

    # projects
    def project(self, pid: str) -> ProjectMeta | None:
        kv = self.client.get(self.ks.meta(pid))
        return codec.decode_meta(kv) if kv else None

    def projects(self) -> list[ProjectMeta]:
        p = self.ks.projects_prefix
        r = self.client.range_raw(p, prefix_end(p))  # values needed for metas only
        out = []
        for pb in r.kvs:
            kind, _ = self.ks.classify(bytes(pb.key))
            if kind == "meta":
                out.append(codec.decode_meta(kv_from_pb(pb)))
        return out

    def tasks(self, pid: str) -> list[TaskRecord] | None:
        """All task records of a visible project (one read, one revision); None if not visible."""
        r = self.client.range_raw(
            self.ks.project_prefix(pid), prefix_end(self.ks.project_prefix(pid))
        )
        meta = False
        recs: list[TaskRecord] = []
        for pb in r.kvs:
            kv = kv_from_pb(pb)
            kind, parts = self.ks.classify(kv.key)
            if kind == "meta":
                meta = True
            elif kind == "task":
                recs.append(codec.decode_task(TaskKey(parts[0], parts[1]), kv))
        return recs if meta else None

    def task_record(self, key: TaskKey) -> TaskRecord | None:
        """The task record alone (a point read)."""
        kv = self.client.get(self.ks.task(key))
        return codec.decode_task(key, kv) if kv else None

    def task(
        self, key: TaskKey
    ) -> tuple[TaskRecord | None, Claim | None, TaskResult | None, TaskState | None]:
        """Record, claim, result and effective state of one task, read at one revision.

        State None means "unknown id" (no such task, or its project not visible).
        """
        keys = [
            self.ks.meta(key.project),
            self.ks.task(key),
            self.ks.claim(key),
            self.ks.result(key),
        ]
        r = self.client.txn_raw([], [op_range(k) for k in keys], retry=True)
        got = [
            kv_from_pb(x.response_range.kvs[0]) if x.response_range.kvs else None
            for x in r.responses
        ]
        meta, tkv, ckv, rkv = got
        if meta is None or tkv is None:
            return None, None, None, None
        rec = codec.decode_task(key, tkv)
        claim = codec.decode_claim(key, ckv) if ckv else None
        res = codec.decode_result(key, rkv) if rkv else None
        return rec, claim, res, effective_state(rec, claim, res)

    def claims(self) -> list[Claim]:
        _, kvs = self.client.get_prefix(self.ks.claims_prefix)
        out = []
        for kv in kvs:
            _, parts = self.ks.classify(kv.key)
            out.append(codec.decode_claim(TaskKey(parts[0], parts[1]), kv))
        return out
