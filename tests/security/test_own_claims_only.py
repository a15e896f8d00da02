"""Agents act only on their own claims.

Agent B (its own valid token) tries everything it can say about agent A's
task: complete it and fail it with A's fencing token, ask to start it, and
open a session resuming A's lease (whose claims are fenced on that lease).
Every completion is rejected, nothing changes in etcd, and A's lease is not
handed out; then A completes its task normally.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from tests.security.conftest import TOKENS, RawAgent, base_settings, bearer, coordinator
from workhive.client import Client, TaskState
from workhive.coordinator.etcd import EtcdClient, Keyspace
from workhive.coordinator.model import ProjectSpec, TaskSpec
from workhive.v1 import agent_pb2, agent_pb2_grpc, common_pb2

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _state(client: Client, pid: str, tid: str) -> tuple[TaskState, str]:
    t = client.task(pid, tid)
    return t.state, t.agent_id


def test_an_agent_cannot_complete_fail_start_or_resume_another_agents_task(
    etcd_url: str, tokens_file: Path
) -> None:
    s = base_settings(etcd_url, auth_tokens_file=str(tokens_file))
    with coordinator(s) as node:
        ch = grpc.insecure_channel(node.address)
        client = Client([node.address], token=TOKENS["*client*"])
        a = RawAgent(ch, (*bearer("agent-a"), ("workhive-agent-id", "agent-a")))
        a.hello("agent-a")
        lease_a = a.next("welcome").welcome.lease_id
        spec = ProjectSpec(id="secure", tasks=(TaskSpec(id="t1", estimate=1.0),))
        client.submit(spec)
        assign = a.next("assign").assign
        ref = assign.task
        assert (ref.project_id, ref.task_id) == ("secure", "t1")

        etcd = EtcdClient([etcd_url])
        ks = Keyspace(s.prefix)
        before = etcd.get_prefix(ks.root)[1]
        state_before = _state(client, "secure", "t1")
        assert state_before[1] == "agent-a"

        b = RawAgent(ch, (*bearer("agent-b"), ("workhive-agent-id", "agent-b")))
        b.hello("agent-b")
        lease_b = b.next("welcome").welcome.lease_id
        assert lease_b != lease_a
        stolen = common_pb2.TaskRef(
            project_id=ref.project_id, task_id=ref.task_id, fence=ref.fence, attempt=ref.attempt
        )
        b.send(start=agent_pb2.StartRequest(task=stolen))
        b.send(completed=agent_pb2.TaskCompleted(task=stolen, duration_seconds=0.1))
        rejected = b.next("completion_rejected").completion_rejected
        assert rejected.task.task_id == "t1" and rejected.reason == common_pb2.STALE_FENCE
        b.send(failed=agent_pb2.TaskFailed(task=stolen, reason="x", retryable=False))
        assert b.next("completion_rejected").completion_rejected.task.task_id == "t1"
        b.send(failed=agent_pb2.TaskFailed(task=stolen, reason="x", retryable=True))
        assert b.next("completion_rejected").completion_rejected.task.task_id == "t1"
        with pytest.raises(TimeoutError):  # no start grant for a task it does not own
            b.next("start_granted", timeout=0.5)
        b.close()

        # B cannot take over A's lease (and with it the fence on A's claims)
        b2 = RawAgent(ch, (*bearer("agent-b"), ("workhive-agent-id", "agent-b")))
        b2.hello("agent-b", resume_lease_id=lease_a)
        welcome = b2.next("welcome").welcome
        assert not welcome.resumed and welcome.lease_id != lease_a
        b2.send(completed=agent_pb2.TaskCompleted(task=stolen, duration_seconds=0.1))
        assert b2.next("completion_rejected").completion_rejected.task.task_id == "t1"
        # ... nor keep it alive through the unary heartbeat
        hb = agent_pb2.HeartbeatRequest(agent_id="agent-b", lease_id=lease_a)
        stub = agent_pb2_grpc.AgentServiceStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            stub.Heartbeat(hb, timeout=5, metadata=bearer("agent-b"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        b2.close()

        # nothing changed: same keys, same revisions, A still owns the task
        time.sleep(0.3)
        after = etcd.get_prefix(ks.root)[1]
        mine = [kv for kv in before if b"/agents/agent-b" not in kv.key]
        assert [kv for kv in after if b"/agents/agent-b" not in kv.key] == mine
        assert _state(client, "secure", "t1") == state_before

        # the owner completes it
        if not assign.started:
            a.send(start=agent_pb2.StartRequest(task=ref))
            a.next("start_granted")
        a.send(completed=agent_pb2.TaskCompleted(task=ref, duration_seconds=0.1))
        assert a.next("completion_ack").completion_ack.task.task_id == "t1"
        deadline = time.monotonic() + 5
        while _state(client, "secure", "t1")[0] is not TaskState.SUCCEEDED:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        a.close()
        client.close()
        etcd.close()
        ch.close()
