"""A small project is stored with the first claims of its tasks, in one txn
(docs/leader.md, "Submit and claim in one txn"), on a real leader, etcd and
SDK agent: the claim of a task that can start at once carries the submit's
revision; a large project takes the full protocol (claims after the meta);
a second submit of an id is refused with nothing changed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.security.conftest import NodeThread, base_settings, coordinator
from workhive.agent import Agent, Task
from workhive.client import Client, Project, TaskStatus
from workhive.client import ProjectExists as ClientProjectExists
from workhive.client import Task as Spec
from workhive.coordinator.etcd import EtcdClient, Keyspace
from workhive.coordinator.leader.submits import MAX_TASKS
from workhive.coordinator.model import TaskKey

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@contextmanager
def leader_with_a_held_agent(etcd_url: str) -> Iterator[tuple[NodeThread, Client]]:
    """A leader, one agent whose handler holds every task until the event is
    set (so claims stay in etcd to be read), and a client."""
    release = threading.Event()

    def hold(task: Task) -> None:
        release.wait(30)

    settings = base_settings(etcd_url, plan_time_box=0)
    with coordinator(settings) as node:
        agent = Agent([node.address], agent_id="agent-0", slots=1)
        thread = threading.Thread(target=agent.run, args=(hold,), daemon=True)
        thread.start()
        client = Client([node.address])
        try:
            for _ in range(200):
                if client.status().agents:
                    break
                threading.Event().wait(0.05)
            yield node, client
        finally:
            release.set()
            agent.stop()
            thread.join(10)
            client.close()


def _claim_revision(etcd_url: str, node: NodeThread, key: TaskKey) -> int:
    etcd = EtcdClient([etcd_url])
    try:
        kv = etcd.get(Keyspace(node.node.settings.prefix).claim(key))
        assert kv is not None, f"{key} is not claimed"
        return kv.create_revision
    finally:
        etcd.close()


def _wait_claimed(node: NodeThread, key: TaskKey) -> None:
    driver = node.node.driver
    assert driver is not None
    for _ in range(200):
        mirror = driver.cluster()
        if mirror is not None and key in mirror.claims:
            return
        threading.Event().wait(0.05)
    raise AssertionError(f"{key} was never claimed")


def test_a_one_task_project_is_claimed_in_the_txn_that_stores_it(etcd_url: str) -> None:
    with leader_with_a_held_agent(etcd_url) as (node, client):
        submitted = client.submit(Project("one", (Spec("t"),)))
        _wait_claimed(node, TaskKey("one", "t"))
        assert _claim_revision(etcd_url, node, TaskKey("one", "t")) == submitted.revision


def test_a_project_too_large_for_one_txn_is_claimed_after_it_is_stored(etcd_url: str) -> None:
    with leader_with_a_held_agent(etcd_url) as (node, client):
        tasks = tuple(Spec(f"t{i:02d}") for i in range(MAX_TASKS + 1))
        submitted = client.submit(Project("big", tasks))
        claimed = TaskKey("big", _running(client, "big")[0].task_id)
        assert _claim_revision(etcd_url, node, claimed) > submitted.revision


def _running(client: Client, pid: str) -> list[TaskStatus]:
    for _ in range(200):
        status = client.status(pid, tasks=True)
        project = next(p for p in status.projects if p.project_id == pid)
        running = [t for t in project.tasks if t.state.value in ("running", "assigned")]
        if running:
            return running
        threading.Event().wait(0.05)
    raise AssertionError(f"nothing of {pid} ever ran")


def test_a_second_submit_of_an_id_is_refused_and_changes_nothing(etcd_url: str) -> None:
    with leader_with_a_held_agent(etcd_url) as (_, client):
        first = client.submit(Project("twice", (Spec("a"),)))
        with pytest.raises(ClientProjectExists, match="already exists"):
            client.submit(Project("twice", (Spec("b"), Spec("c"))))
        status = client.status("twice", tasks=True)
        project = next(p for p in status.projects if p.project_id == "twice")
        assert [t.task_id for t in project.tasks] == ["a"]
        assert first.task_count == 1
