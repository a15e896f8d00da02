"""A fault scenario: coordinators and agents as processes against a given etcd.

Used by ``tests/failover`` and ``tools/recovery_table.py``. A ``Scenario``
starts N coordinators and M agents (the ``workhive up`` sleep command, short
tasks) under its own key prefix, submits generated projects, finds the leader,
waits for progress, measures time to recover from the agents' execution log
and etcd's history, and always stops every process it started (``stop`` is
idempotent; use it in ``finally`` or the ``scenario`` context manager).
``check()`` runs the invariant checker over the whole run.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from tests.harness.invariants import assert_invariants, read_history
from workhive.client import Client, ClusterStatus, ProjectStatus, WorkhiveError
from workhive.coordinator.cli.up import SLEEP_CMD
from workhive.coordinator.etcd import EtcdClient, EventType, Keyspace, WatchEvent
from workhive.coordinator.etcd.codec import decode_claim, decode_result, loads
from workhive.coordinator.local_cluster.audit import AuditReport
from workhive.coordinator.local_cluster.processes import LocalCluster, Proc
from workhive.coordinator.model import ProjectSpec, TaskKey, TaskSpec
from workhive.coordinator.service.errors import reason_of
from workhive.v1 import client_pb2, client_pb2_grpc


def generated_project(
    pid: str,
    tasks: int = 80,
    *,
    seed: int = 1,
    width: int = 8,
    sleep: tuple[float, float] = (0.05, 0.3),
    max_attempts: int = 10,
) -> ProjectSpec:
    """A layered DAG: ``width`` tasks per layer, each depending on 1-2 tasks of
    the layer before; sleeps in ``sleep`` seconds (carried in the payload);
    a few priority-9 tasks (never stolen). Deterministic for a seed."""
    rng = random.Random(seed)
    specs: list[TaskSpec] = []
    prev: list[str] = []
    layer = 0
    while len(specs) < tasks:
        cur: list[str] = []
        for i in range(min(width, tasks - len(specs))):
            tid = f"l{layer}-t{i}"
            deps = tuple(sorted(rng.sample(prev, k=min(len(prev), rng.choice((1, 2))))))
            s = round(rng.uniform(*sleep), 3)
            specs.append(
                TaskSpec(
                    id=tid,
                    depends_on=deps,
                    priority=9 if rng.random() < 0.1 else rng.randint(2, 6),
                    estimate=s,
                    duration=s,
                    kind=f"k{i % 3}",
                    branch=f"b{i % 4}",
                    payload={"sleep": s},
                    max_attempts=max_attempts,
                )
            )
            cur.append(tid)
        prev = cur
        layer += 1
    return ProjectSpec(id=pid, tasks=tuple(specs), source="<failover scenario>")


@dataclass
class Leader:
    id: str
    address: str
    term: int
    seen_at: float  # time.time() when first observed


class Scenario:
    """A local cluster of processes against ``etcd_urls`` (see module docstring)."""

    def __init__(
        self,
        etcd_urls: Sequence[str],
        run_dir: Path | None = None,
        *,
        prefix: str | None = None,
        env: dict[str, str] | None = None,
        coordinator_flags: Sequence[str] = (),
    ) -> None:
        self.etcd_url = ",".join(etcd_urls)
        self._own_dir = run_dir is None
        self.run_dir = run_dir or Path(tempfile.mkdtemp(prefix="workhive-scenario-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix or f"/wh-fo-{uuid.uuid4().hex[:10]}/"
        self.cluster = LocalCluster(self.etcd_url, self.run_dir, prefix=self.prefix, extra_env=env)
        self.coordinator_flags = list(coordinator_flags)
        self._client: Client | None = None
        self.client_timeout = 30.0  # how long a client call may keep retrying
        self.projects: list[ProjectSpec] = []
        self._history: list[WatchEvent] | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self, coordinators: int = 3, agents: int = 4, slots: int = 1) -> Scenario:
        for _ in range(coordinators):
            self.cluster.add_coordinator(self.coordinator_flags)
        self.cluster.wait_coordinators(60.0)
        for _ in range(agents):
            self.add_agent(slots=slots)
        return self

    def add_agent(self, slots: int = 1, agent_id: str | None = None) -> Proc:
        return self.cluster.add_agent(SLEEP_CMD, slots=slots, agent_id=agent_id)

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self.cluster.stop()

    def cleanup(self) -> None:
        """Stop, and remove the run directory when this scenario made it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    @property
    def coordinators(self) -> list[Proc]:
        return self.cluster.coordinators

    @property
    def agents(self) -> list[Proc]:
        return self.cluster.agents

    # -- client ------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        if self._client is None:
            # short per-call deadline: a SIGSTOPped leader must not stall the poll
            self._client = Client(
                self.cluster.coordinator_addresses,
                timeout=self.client_timeout,
                call_deadline=1.5,
            )
        return self._client

    def reset_client(self) -> None:
        """Drop the client (e.g. after changing ``client_timeout``)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def submit(self, spec: ProjectSpec) -> str:
        self.client.submit(spec)
        self.projects.append(spec)
        return spec.id

    def status(self, pid: str = "", tasks: bool = False) -> ClusterStatus:
        return self.client.status(pid, tasks=tasks)

    def project(self, pid: str) -> ProjectStatus | None:
        try:
            st = self.status(pid)
        except WorkhiveError:
            return None
        return next((p for p in st.projects if p.project_id == pid), None)

    # -- leader ------------------------------------------------------------------------

    def wait_leader(self, timeout: float = 30.0, *, not_term: int = 0, not_id: str = "") -> Leader:
        """The leader as the cluster reports it, once it differs from ``not_*``."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                st = self.status()
            except WorkhiveError as exc:
                last = str(exc)
                time.sleep(0.05)
                continue
            ld = st.leader
            if ld.leader_id and ld.term != not_term and ld.leader_id != not_id:
                return Leader(ld.leader_id, ld.address, ld.term, time.time())
            last = f"leader={ld.leader_id or '-'} term={ld.term}"
            time.sleep(0.05)
        raise AssertionError(f"no (new) leader within {timeout}s: {last}; logs in {self.run_dir}")

    def proc(self, name: str) -> Proc:
        return next(p for p in [*self.coordinators, *self.agents] if p.name == name)

    def leader_proc(self, timeout: float = 30.0) -> tuple[Proc, Leader]:
        leader = self.wait_leader(timeout)
        return self.proc(leader.id), leader

    def ask_directly(self, proc: Proc, timeout: float = 2.0) -> str:
        """What ``proc`` itself says about leading: ``leader`` if it answers
        GetStatus as the leader, ``follower:<leader id>`` if it redirects,
        or ``error:<code>``."""
        with grpc.insecure_channel(proc.address) as ch:
            stub = client_pb2_grpc.ClientServiceStub(ch)
            try:
                st = stub.GetStatus(client_pb2.GetStatusRequest(), timeout=timeout)
            except grpc.RpcError as err:
                reason, meta = reason_of(err)
                if reason == "NOT_LEADER":
                    return f"follower:{meta.get('leader_id', '')}"
                return f"error:{err.code().name}"
        return "leader" if st.leader.leader_id == proc.name else f"follower:{st.leader.leader_id}"

    # -- progress --------------------------------------------------------------------

    def wait_succeeded(self, pid: str, at_least: int, timeout: float = 60.0) -> int:
        """Block until ``at_least`` tasks of ``pid`` succeeded; returns the count."""
        deadline = time.monotonic() + timeout
        done = 0
        while time.monotonic() < deadline:
            p = self.project(pid)
            done = p.counts.get("succeeded", 0) if p else 0
            if done >= at_least or (p is not None and p.finished):
                return done
            time.sleep(0.1)
        raise AssertionError(f"{pid}: {done} < {at_least} succeeded after {timeout}s")

    def wait_finished(self, pid: str, timeout: float = 90.0) -> ProjectStatus:
        """Block until ``pid`` finished; every task must have succeeded."""
        deadline = time.monotonic() + timeout
        last: ProjectStatus | None = None
        while time.monotonic() < deadline:
            p = self.project(pid)
            if p is not None:
                last = p
                if p.finished:
                    counts = dict(p.counts)
                    total = next(len(s.tasks) for s in self.projects if s.id == pid)
                    assert counts.get("succeeded", 0) == total, (
                        f"{pid} finished with {counts} (expected {total} succeeded); "
                        f"logs in {self.run_dir}"
                    )
                    return p
            time.sleep(0.2)
        seen = dict(last.counts) if last else None
        raise AssertionError(
            f"{pid} not finished within {timeout}s (last counts {seen}); logs in {self.run_dir}"
        )

    # -- evidence ----------------------------------------------------------------------

    def exec_events(self, event: str | None = None) -> list[dict[str, object]]:
        """The agents' execution log (start/finish/rejected/dropped lines)."""
        path = self.cluster.exec_log
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if event is None or rec.get("event") == event:
                out.append(rec)
        return out

    def history(self, refresh: bool = False) -> list[WatchEvent]:
        if self._history is None or refresh:
            self._history = read_history(self.etcd_url, self.prefix)
        return self._history

    def agent_leases_ended(self) -> int:
        """Agent keys deleted by etcd (a lease expired or was revoked) so far."""
        ks = Keyspace(self.prefix)
        return sum(
            1
            for ev in self.history(refresh=True)
            if ev.type is EventType.DELETE and ks.classify(ev.key)[0] == "agent"
        )

    def started_by_terms(self, accept: Callable[[int], bool]) -> set[tuple[str, str, int]]:
        """(project, task, fence) of claims marked started by a leader whose
        term satisfies ``accept`` (from etcd's history)."""
        ks = Keyspace(self.prefix)
        out = set()
        for ev in self.history():
            if ev.type is not EventType.PUT:
                continue
            kind, parts = ks.classify(ev.key)
            if kind != "claim":
                continue
            claim = decode_claim(TaskKey(parts[0], parts[1]), ev.kv)
            term = int(loads(ev.kv.value).get("term", 0))
            if claim.started and accept(term):
                out.add((parts[0], parts[1], claim.fence))
        return out

    def first_start_after(
        self, t: float, accept: Callable[[dict[str, object]], bool] = lambda _: True
    ) -> float | None:
        """Seconds from ``t`` (unix time) to the first agent start after it that
        ``accept`` admits; None when there is none."""
        times = [
            float(e["t"])  # type: ignore[arg-type]
            for e in self.exec_events("start")
            if float(e["t"]) > t and accept(e)  # type: ignore[arg-type]
        ]
        return min(times) - t if times else None

    def resume_under_new_term(self, fault_t: float, old_term: int) -> float | None:
        """Seconds from the fault to the first task start granted by a leader
        other than ``old_term`` (the claim's started write carries the term)."""
        granted = self.started_by_terms(lambda term: term != old_term)
        return self.first_start_after(
            fault_t, lambda e: (e["project"], e["task"], e["fence"]) in granted
        )

    def result_of(self, pid: str, tid: str) -> tuple[str, int]:
        """(agent, number of result writes) for a task, from etcd's history."""
        ks = Keyspace(self.prefix)
        key = TaskKey(pid, tid)
        writes = [
            ev for ev in self.history() if ev.type is EventType.PUT and ev.key == ks.result(key)
        ]
        agent = decode_result(key, writes[-1].kv).agent if writes else ""
        return agent, len(writes)

    def result_now(self, pid: str, tid: str) -> str | None:
        """The agent of the task's committed result right now (None: no result)."""
        key = TaskKey(pid, tid)
        client = EtcdClient([u for u in self.etcd_url.split(",") if u], timeout=5.0)
        try:
            kv = client.get(Keyspace(self.prefix).result(key))
        finally:
            client.close()
        return None if kv is None else decode_result(key, kv).agent

    def check(self, min_tasks: int | None = None) -> AuditReport:
        """The invariant checker over the whole run (raises on violations)."""
        expected = sum(len(p.tasks) for p in self.projects) if min_tasks is None else min_tasks
        return assert_invariants(
            self.etcd_url, self.prefix, self.cluster.exec_log, min_tasks=expected
        )

    def log_tail(self, proc: Proc, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(proc.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def log_has(self, proc: Proc, text: str) -> bool:
        with contextlib.suppress(OSError):
            return text in proc.log_path.read_text(errors="replace")
        return False


@contextlib.contextmanager
def scenario(
    etcd_urls: Sequence[str], run_dir: Path | None = None, **kw: object
) -> Iterator[Scenario]:
    """A ``Scenario`` that is always stopped (and its temp dir removed)."""
    sc = Scenario(etcd_urls, run_dir, **kw)  # type: ignore[arg-type]
    try:
        yield sc
    finally:
        sc.cleanup()


def hold(proc: Proc, seconds: float) -> None:
    """SIGSTOP ``proc`` for ``seconds``, then SIGCONT it."""
    proc.signal(signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        proc.signal(signal.SIGCONT)


__all__ = ["Leader", "Scenario", "generated_project", "hold", "scenario"]
