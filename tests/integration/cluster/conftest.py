"""A real cluster per test: coordinator and agent processes on 127.0.0.1
against the process etcd (own key prefix); always stopped and audited."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.etcd_fixtures import EtcdTarget
from workhive.client import Client, ClusterStatus, ProjectStatus
from workhive.coordinator.cli.up import SLEEP_CMD
from workhive.coordinator.etcd import EtcdClient, Keyspace
from workhive.coordinator.etcd.history import history
from workhive.coordinator.local_cluster.audit import AuditReport, audit
from workhive.coordinator.local_cluster.processes import LocalCluster


class Harness:
    """A LocalCluster plus the client and checks the tests need."""

    def __init__(self, etcd: EtcdTarget, run_dir: Path, env: dict[str, str]) -> None:
        self.etcd = etcd
        self.cluster = LocalCluster(
            ",".join(etcd.endpoints), run_dir, prefix=etcd.prefix, extra_env=env
        )
        self._client: Client | None = None

    def start(self, coordinators: int = 3, agents: int = 0, **agent_kw: object) -> Harness:
        for _ in range(coordinators):
            self.cluster.add_coordinator()
        self.cluster.wait_coordinators()
        for _ in range(agents):
            self.add_agent(**agent_kw)
        return self

    def add_agent(self, **kw: object) -> object:
        return self.cluster.add_agent(SLEEP_CMD, **kw)  # type: ignore[arg-type]

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.cluster.coordinator_addresses, timeout=30)
        return self._client

    def status(self, pid: str = "", tasks: bool = False) -> ClusterStatus:
        return self.client.status(pid, tasks=tasks)

    def wait_leader(self, timeout: float = 20.0, not_term: int = 0) -> ClusterStatus:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                st = self.status()
                if st.leader.leader_id and st.leader.term != not_term:
                    return st
            except Exception:
                pass
            time.sleep(0.05)
        raise AssertionError(f"no new leader within {timeout}s")

    def leader_proc(self) -> object:
        lid = self.wait_leader().leader.leader_id
        return next(c for c in self.cluster.coordinators if c.name == lid)

    def wait_finished(self, pid: str, timeout: float = 90.0) -> ProjectStatus:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                st = self.status(pid)
            except Exception:
                time.sleep(0.2)
                continue
            last = next((p for p in st.projects if p.project_id == pid), None)
            if last is not None and last.finished:
                return last
            time.sleep(0.2)
        raise AssertionError(f"project {pid} not finished within {timeout}s: {last}")

    def audit(self) -> AuditReport:
        client = EtcdClient(list(self.etcd.endpoints), timeout=10)
        try:
            events = history(client, Keyspace(self.etcd.prefix))
        finally:
            client.close()
        return audit(events, Keyspace(self.etcd.prefix), self.cluster.exec_log)

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
        self.cluster.stop()


@pytest.fixture
def make_cluster(etcd: EtcdTarget, tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(env: dict[str, str] | None = None) -> Harness:
        h = Harness(etcd, tmp_path, env or {})
        made.append(h)
        return h

    try:
        yield make
    finally:
        for h in made:
            h.stop()
