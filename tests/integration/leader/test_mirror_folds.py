"""The leader folds its own writes into its mirror and skips the watch's echo
of those it folded exactly (docs/leader.md, "Folding its own writes"): after a
project ran (claims, starts, completions with results, a failure), the
leader's mirror holds exactly what a fresh read of etcd decodes to, and the
task specs stored at the end are the ones the submit stored (every write of a
record re-encodes the mirror's copy: an inexact fold would rewrite the user's
spec)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.security.conftest import base_settings, coordinator
from workhive.agent import Agent, Task
from workhive.client import Client, Project, RetryBackoff
from workhive.client import Task as Spec
from workhive.coordinator.etcd import ClusterState, EtcdClient, Keyspace, snapshot

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def _handler(task: Task) -> Any:
    if task.task_id == "bad":
        raise RuntimeError("fails on purpose")
    return {"task": task.task_id, "inputs": sorted(task.inputs)}


def _project() -> Project:
    tasks = [
        Spec(
            f"s{i}",
            estimate=0.001,
            priority=i + 2,
            kind="source",
            branch=f"b{i % 2}",
            payload={"n": i, "tags": ["x", "y"]},
            timeout=30.0,
            retry_backoff=RetryBackoff(0.5, 4.0),
        )
        for i in range(6)
    ]
    tasks += [Spec(f"m{i}", depends_on=(f"s{i}", f"s{(i + 1) % 6}")) for i in range(6)]
    tasks += [
        Spec("join", depends_on=tuple(f"m{i}" for i in range(6))),
        Spec("bad", max_attempts=1),
    ]
    return Project("folds", tuple(tasks))


def test_the_leaders_mirror_equals_etcd_after_a_project_ran(etcd_url: str) -> None:
    settings = base_settings(etcd_url, plan_time_box=0)
    with coordinator(settings) as node:
        agents = [Agent([node.address], agent_id=f"agent-{i}", slots=2) for i in range(2)]
        threads = [threading.Thread(target=a.run, args=(_handler,), daemon=True) for a in agents]
        for t in threads:
            t.start()
        client = Client([node.address])
        etcd = EtcdClient([etcd_url])
        try:
            submitted = client.submit(_project())
            status = client.wait("folds", timeout=60)
            assert status.counts == {"succeeded": 13, "failed": 1}
            driver = node.node.driver
            assert driver is not None
            revision, kvs = snapshot(etcd, settings.prefix.encode())
            deadline = time.monotonic() + 10
            while (mirror := driver.cluster()) is None or mirror.revision < revision:
                assert time.monotonic() < deadline, "the mirror never caught up"
                time.sleep(0.05)
            fresh = ClusterState.from_kvs(Keyspace(settings.prefix), revision, kvs)
            assert mirror.tasks == fresh.tasks
            assert mirror.claims == fresh.claims
            assert mirror.results == fresh.results
            assert mirror.state_counts == fresh.state_counts
            ks = Keyspace(settings.prefix)
            first = ClusterState.from_kvs(
                ks, submitted.revision, etcd.get_prefix(ks.root, revision=submitted.revision)[1]
            )
            assert {k: r.spec for k, r in fresh.tasks.items()} == {
                k: r.spec for k, r in first.tasks.items()
            }
        finally:
            for a in agents:
                a.stop()
            for t in threads:
                t.join(10)
            client.close()
            etcd.close()
