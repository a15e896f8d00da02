"""Deleting finished projects (``workhive delete``, ``retention_seconds``):
one fenced txn removes every key of the project, the leader forgets it, and
a running project is refused (a real coordinator in-process, real etcd)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.security.conftest import NodeThread, base_settings, coordinator
from workhive.client import Client, ProjectRunning, TaskState, UnknownProject
from workhive.coordinator.etcd import EtcdClient
from workhive.coordinator.model import ProjectSpec, TaskSpec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _project(pid: str) -> ProjectSpec:
    return ProjectSpec(id=pid, tasks=(TaskSpec(id="a"), TaskSpec(id="b", depends_on=("a",))))


def _keys(etcd_url: str, node: NodeThread, pid: str) -> int:
    ks = node.node.ks
    with EtcdClient([etcd_url]) as c:
        return sum(
            len(c.get_prefix(p)[1])
            for p in (ks.project_prefix(pid), ks.results_project_prefix(pid))
        )


@pytest.fixture
def node(etcd_url: str) -> Iterator[NodeThread]:
    with coordinator(base_settings(etcd_url)) as n:
        yield n


@pytest.fixture
def client(node: NodeThread) -> Iterator[Client]:
    with Client([node.address]) as c:
        yield c


def _finished(client: Client, pid: str) -> None:
    client.submit(_project(pid))
    client.cancel(pid)  # no agent: cancelling finishes it
    client.wait(pid, timeout=10)


def test_deleting_a_finished_project_removes_every_key(
    client: Client, node: NodeThread, etcd_url: str
) -> None:
    _finished(client, "old")
    assert _keys(etcd_url, node, "old") > 0
    assert client.delete("old") == 2
    assert _keys(etcd_url, node, "old") == 0
    assert client.task("old", "a").state is TaskState.UNKNOWN


def test_a_deleted_project_id_can_be_submitted_again(client: Client) -> None:
    _finished(client, "again")
    client.delete("again")
    deadline = time.monotonic() + 5
    while True:  # the leader forgets it once the delete's watch event arrives
        try:
            client.submit(_project("again"))
            break
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert client.task("again", "a").state in (TaskState.READY, TaskState.PENDING)


def test_a_running_project_is_not_deleted(client: Client, node: NodeThread, etcd_url: str) -> None:
    client.submit(_project("busy"))
    before = _keys(etcd_url, node, "busy")
    with pytest.raises(ProjectRunning) as info:
        client.delete("busy")
    assert "2 unfinished tasks: cancel it first" in str(info.value)
    assert _keys(etcd_url, node, "busy") == before


def test_deleting_an_unknown_project_is_not_found(client: Client) -> None:
    with pytest.raises(UnknownProject):
        client.delete("never-was")


def test_retention_deletes_projects_that_finished_long_enough_ago(etcd_private: Any) -> None:
    """Retention compacts etcd's history: a private etcd, so the shared one
    keeps the full history other tests audit."""
    etcd_url = etcd_private.endpoints[0]
    with coordinator(base_settings(etcd_url, retention_seconds=1.0)) as n, Client([n.address]) as c:
        _finished(c, "expiring")
        deadline = time.monotonic() + 15
        while _keys(etcd_url, n, "expiring"):
            assert time.monotonic() < deadline, "retention never deleted the project"
            time.sleep(0.2)
        assert all(p.project_id != "expiring" for p in c.status().projects)
