"""Status from any replica (``coordinator/state_reads.py``). An answer is
reused for a moment (``GetStatus``'s cache), never across a change of leader:
a follower's answer (reused ten times as long as it took) named the old
leader after the follower took over, until it expired. A follower with a warm
mirror answers from it: an etcd snapshot of a big project takes seconds."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace

import grpc
import pytest

from tests.security.conftest import NodeThread, base_settings
from workhive.coordinator import state_reads
from workhive.coordinator.model import ProjectSpec, TaskSpec
from workhive.coordinator.service import client_service
from workhive.coordinator.service.convert import project_to_proto
from workhive.v1 import client_pb2, client_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _status(node: NodeThread, project_id: str = "p") -> client_pb2.GetStatusResponse:
    with grpc.insecure_channel(node.address) as ch:
        stub = client_pb2_grpc.ClientServiceStub(ch)
        return stub.GetStatus(client_pb2.GetStatusRequest(project_id=project_id), timeout=10)


def _submit(node: NodeThread) -> None:
    """Project ``p`` of one task, through ``node``."""
    with grpc.insecure_channel(node.address) as ch:
        client_pb2_grpc.ClientServiceStub(ch).SubmitProject(
            client_pb2.SubmitProjectRequest(
                project=project_to_proto(ProjectSpec(id="p", tasks=(TaskSpec(id="t"),)))
            ),
            timeout=10,
        )


@contextlib.contextmanager
def _leader_and_follower(etcd_url: str) -> Iterator[tuple[NodeThread, NodeThread]]:
    """Replica ``a`` leading, ``b`` following, project ``p`` submitted; both
    stopped after (``a`` unless the test stopped it)."""
    settings = base_settings(etcd_url, plan_time_box=0)
    a = NodeThread(replace(settings, coordinator_id="a")).start()
    b: NodeThread | None = None
    try:
        a.wait_leader()
        b = NodeThread(replace(settings, coordinator_id="b")).start()
        _submit(a)
        yield a, b
    finally:
        if b is not None:
            b.stop()
        if a._thread.is_alive():
            a.stop()


def test_a_status_answer_from_before_a_takeover_is_not_served_after_it(
    etcd_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_service, "STATUS_MAX_AGE", 60.0)  # cached as long as a slow one
    with _leader_and_follower(etcd_url) as (a, b):
        deadline = time.monotonic() + 10
        while (before := _status(b)).leader.leader_id != "a" or not before.projects:
            assert time.monotonic() < deadline, "the follower never named the leader"
            time.sleep(0.1)
        a.stop()
        b.wait_leader()
        after = _status(b)
        assert after.leader.leader_id == "b"
        assert after.leader.term > before.leader.term
        assert [p.project_id for p in after.projects] == ["p"]


def test_a_follower_with_a_warm_mirror_answers_status_without_reading_etcd(
    etcd_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_snapshot(*args: object) -> None:
        raise AssertionError("a follower with a warm mirror read a snapshot from etcd")

    with _leader_and_follower(etcd_url) as (_, b):
        deadline = time.monotonic() + 10
        while not _status(b).projects:  # the follower's view catches up
            assert time.monotonic() < deadline, "the follower never showed the project"
            time.sleep(0.1)
        monkeypatch.setattr(state_reads, "snapshot", no_snapshot)
        answer = _status(b, project_id="")  # all projects: not a cached answer
        assert answer.leader.leader_id == "a"
        assert [p.project_id for p in answer.projects] == ["p"]
