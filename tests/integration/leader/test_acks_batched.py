"""Completions are acknowledged in batches (docs/agent.md, "Completion
acks"): the completions one turn commits for an agent that says
``Hello.ack_batches`` are acknowledged by one ``CompletionAck`` (``task`` and
``more``); an agent that does not gets one ack per completion, as before."""

from __future__ import annotations

import grpc
import pytest

from tests.security.conftest import RawAgent, base_settings, coordinator
from workhive.client import Client
from workhive.coordinator.model import ProjectSpec, TaskSpec
from workhive.v1 import agent_pb2

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

TASKS = ("t1", "t2", "t3")


def _acked_refs(ack_batches: bool, etcd_url: str) -> list[list[str]]:
    """Three tasks run on a hand-driven agent with three slots; their
    completions go in one stream write; the ack messages that come back."""
    with coordinator(base_settings(etcd_url, plan_time_box=0)) as node:
        ch = grpc.insecure_channel(node.address)
        client = Client([node.address])
        agent = RawAgent(ch)
        try:
            hello = agent_pb2.Hello(agent_id="a1", slots=3, prefetch=1, ack_batches=ack_batches)
            agent.send(hello=hello)
            agent.next("welcome")
            client.submit(
                ProjectSpec(id="acks", tasks=tuple(TaskSpec(id=t, estimate=5.0) for t in TASKS))
            )
            assigned = [agent.next("assign").assign for _ in TASKS]
            assert all(a.started for a in assigned)
            done = [
                agent_pb2.AgentMessage(
                    completed=agent_pb2.TaskCompleted(task=a.task, duration_seconds=0.1)
                )
                for a in assigned
            ]
            agent.send(batch=agent_pb2.AgentBatch(messages=done))
            acks: list[list[str]] = []
            while sum(len(a) for a in acks) < len(TASKS):
                ack = agent.next("completion_ack").completion_ack
                acks.append([r.task_id for r in (ack.task, *ack.more)])
            return acks
        finally:
            agent.close()
            client.close()
            ch.close()


def test_the_completions_of_one_turn_are_acknowledged_by_one_message(etcd_url: str) -> None:
    assert [sorted(a) for a in _acked_refs(True, etcd_url)] == [list(TASKS)]


def test_an_agent_that_does_not_read_batched_acks_gets_one_per_completion(etcd_url: str) -> None:
    assert sorted(_acked_refs(False, etcd_url)) == [[t] for t in TASKS]
