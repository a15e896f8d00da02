"""A completion this leader did not commit (an earlier leader committed it
after the state this term restored from) still reaches the scheduler: the
watch shows the claim deleted with a result, and the task's dependents run.

Mixed soak, 2026-12-07, fault 756: a new leader restored from a warm mirror
handed over before it had caught up; the completions the old leader had
committed meanwhile came through the watch, were skipped (a deleted claim
with a result was taken for the leader's own), the scheduler kept the
finished tasks running on their agents and started nothing for 60 s.
"""

from __future__ import annotations

import grpc
import pytest

from tests.security.conftest import RawAgent, base_settings, coordinator
from workhive.client import Client, Project, Task
from workhive.coordinator.etcd import Claims, Completion, EtcdClient, Keyspace
from workhive.coordinator.model import TaskKey, TaskResult, TaskState

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_a_completion_committed_by_an_earlier_leader_releases_the_dependents(
    etcd_url: str,
) -> None:
    settings = base_settings(etcd_url, plan_time_box=0)
    with coordinator(settings) as node:
        client = Client([node.address])
        agent = RawAgent(grpc.insecure_channel(node.address))
        etcd = EtcdClient([etcd_url])
        try:
            agent.hello("agent-1")
            lease = agent.next("welcome").welcome.lease_id
            client.submit(Project("foreign", (Task("a"), Task("b", depends_on=("a",)))))
            ref = agent.next("assign").assign.task
            assert ref.task_id == "a"
            key = TaskKey("foreign", "a")
            result = TaskResult(key, TaskState.SUCCEEDED, agent="agent-1", attempt=ref.attempt)
            # committed outside this leader, as the previous leader would have
            done = Claims(etcd, Keyspace(settings.prefix)).complete(
                [Completion(key, ref.fence, lease, result)]
            )
            assert done[0].ok
            nxt = agent.next("assign", timeout=10).assign.task
            assert nxt.task_id == "b"
        finally:
            agent.close()
            etcd.close()
