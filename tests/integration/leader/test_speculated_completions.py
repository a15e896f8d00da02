"""A success reaches the scheduler before it commits (docs/leader.md, "One txn
per turn"); when etcd then refuses it, the leader re-lists and nothing runs
early.

The agent's claim on ``a`` is deleted in etcd between the report and the
txn that would commit it together with the claim on its child ``b`` (as when
the agent's lease expires at that moment). The completion is refused, so is
``b``'s claim; the leader rebuilds its state from etcd, ``a`` runs again and
only then ``b``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import grpc
import pytest

from tests.security.conftest import RawAgent, base_settings, coordinator
from workhive.client import Client, Project, Task, TaskState
from workhive.coordinator.etcd import ClaimRequest, Completion, Fence, ItemResult, TaskRecord
from workhive.coordinator.leader.writes import EtcdClaimsStore
from workhive.coordinator.model import TaskKey
from workhive.v1 import agent_pb2

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_a_refused_completion_the_scheduler_already_heard_of_is_undone_by_a_relist(
    etcd_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = EtcdClaimsStore.complete_and_create
    expired: list[str] = []

    def claim_expires_first(
        self: EtcdClaimsStore,
        comps: Sequence[Completion],
        known: Mapping[TaskKey, TaskRecord],
        reqs: Sequence[ClaimRequest],
        fence: Fence,
    ) -> tuple[list[ItemResult], list[ItemResult]]:
        if not expired:
            for c in comps:
                self._client.delete(self._claims.ks.claim(c.key))
                expired.append(c.key.task)
        return real(self, comps, known, reqs, fence)

    monkeypatch.setattr(EtcdClaimsStore, "complete_and_create", claim_expires_first)
    with coordinator(base_settings(etcd_url, plan_time_box=0)) as node:
        client = Client([node.address])
        agent = RawAgent(grpc.insecure_channel(node.address))
        try:
            agent.hello("agent-1")
            agent.next("welcome")
            client.submit(
                Project("relist", (Task("a", estimate=1.0), Task("b", depends_on=("a",))))
            )
            seen: list[tuple[str, str]] = []  # (message kind, task id), in order
            deadline = time.monotonic() + 30
            while ("completion_ack", "b") not in seen:
                msg = agent.next(timeout=max(0.1, deadline - time.monotonic()))
                kind = msg.WhichOneof("kind")
                if kind == "assign" and not msg.assign.started:
                    agent.send(start=agent_pb2.StartRequest(task=msg.assign.task))
                    continue
                run = {"assign": msg.assign.task, "start_granted": msg.start_granted.task}
                if kind in run:
                    ref = run[kind]
                    seen.append(("run", ref.task_id))
                    agent.send(completed=agent_pb2.TaskCompleted(task=ref, duration_seconds=0.01))
                elif kind in ("completion_ack", "completion_rejected"):
                    ref = getattr(msg, kind).task
                    seen.append((kind, ref.task_id))
        finally:
            agent.close()
        assert expired == ["a"]
        assert seen == [
            ("run", "a"),
            ("completion_rejected", "a"),
            ("run", "a"),
            ("completion_ack", "a"),
            ("run", "b"),
            ("completion_ack", "b"),
        ]
        assert client.task("relist", "a").state is TaskState.SUCCEEDED
        assert node.node.metrics.leader_relists._value.get() == 1
