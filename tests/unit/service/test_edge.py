"""The gRPC edge: protobuf <-> domain translation and error details."""

from __future__ import annotations

import grpc
import pytest

from workhive.coordinator.model import (
    AgentInfo,
    Claim,
    LeaderInfo,
    ProjectSpec,
    TaskKey,
    TaskSpec,
    TaskState,
)
from workhive.coordinator.scheduling import ProjectError
from workhive.coordinator.service.agent_hub import AgentConn, AgentHub
from workhive.coordinator.service.convert import (
    leader_from_proto,
    leader_to_proto,
    project_from_proto,
    project_to_proto,
    state_from_proto,
    state_name,
    state_to_proto,
)
from workhive.coordinator.service.errors import not_leader
from workhive.v1 import client_pb2, common_pb2


def _spec() -> ProjectSpec:
    return ProjectSpec(
        id="p",
        tasks=(
            TaskSpec(id="a", estimate=1.5, kind="k", payload={"x": [1, 2]}),
            TaskSpec(
                id="b",
                depends_on=("a",),
                priority=9,
                branch="api",
                requires=frozenset({"gpu"}),
                max_attempts=5,
            ),
        ),
    )


def test_a_project_survives_the_round_trip_through_protobuf() -> None:
    spec = _spec()
    back = project_from_proto(project_to_proto(spec))
    assert back.id == spec.id
    assert back.tasks == spec.tasks


def test_a_wire_project_is_validated_like_a_file() -> None:
    msg = client_pb2.ProjectSpec(
        project_id="p", tasks=[client_pb2.TaskSpec(id="a", depends_on=["ghost"])]
    )
    with pytest.raises(ProjectError, match="ghost"):
        project_from_proto(msg)


def test_every_state_maps_to_a_wire_state_and_back() -> None:
    for state in TaskState:
        assert state_from_proto(state_to_proto(state)) is state
    assert state_to_proto(None) == common_pb2.TASK_STATE_UNKNOWN
    assert state_name(common_pb2.TASK_STATE_UNKNOWN) == "unknown"


def test_leader_info_round_trip_and_absence() -> None:
    info = LeaderInfo("c1", "127.0.0.1:1", 7)
    assert leader_from_proto(leader_to_proto(info)) == info
    assert leader_from_proto(leader_to_proto(None)) is None


def test_not_leader_carries_error_info_and_mirrored_metadata() -> None:
    status = not_leader(LeaderInfo("c1", "127.0.0.1:9", 42))
    assert status.code == grpc.StatusCode.FAILED_PRECONDITION
    md = dict(status.trailing_metadata)
    assert md["workhive-leader-address"] == "127.0.0.1:9"
    assert md["workhive-error-reason"] == "NOT_LEADER"
    assert "grpc-status-details-bin" in md


def test_messages_for_an_absent_agent_wait_in_its_mailbox() -> None:
    hub = AgentHub()
    claim = Claim(TaskKey("p", "a"), "ag", attempt=1, started=True, fence=10, mod_revision=10)
    hub.assign(claim, TaskSpec(id="a", payload={"n": 1}), term=3)
    conn = AgentConn(AgentInfo(id="ag"), lease_id=5)
    hub.attach(conn)
    msg = conn.outbox.get_nowait()
    assert msg is not None and msg.assign.task.fence == 10 and msg.assign.started
    assert msg.assign.payload_json == '{"n": 1}'


def test_a_newer_session_replaces_the_old_one() -> None:
    hub = AgentHub()
    old = AgentConn(AgentInfo(id="ag"), lease_id=5)
    new = AgentConn(AgentInfo(id="ag"), lease_id=5)
    hub.attach(old)
    hub.attach(new)
    assert old.outbox.get_nowait() is None  # closed
    assert not hub.detach(old) and hub.detach(new)
