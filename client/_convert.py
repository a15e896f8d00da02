"""Protobuf <-> client types: the only module of the client that builds or
reads ``workhive.v1`` messages besides the stub calls in ``_client``."""

from __future__ import annotations

import json
from typing import Any

from workhive.client._types import (
    AgentStatus,
    ClusterStatus,
    Leader,
    ProjectEvent,
    ProjectLike,
    ProjectStatus,
    Submitted,
    TaskLike,
    TaskState,
    TaskStatus,
)
from workhive.v1 import client_pb2, common_pb2


def state_from_proto(value: common_pb2.TaskState.ValueType) -> TaskState:
    name = common_pb2.TaskState.Name(value).removeprefix("TASK_STATE_").lower()
    try:
        return TaskState(name)
    except ValueError:  # UNSPECIFIED, or a state newer than this client
        return TaskState.UNKNOWN


def task_to_proto(t: TaskLike) -> client_pb2.TaskSpec:
    return client_pb2.TaskSpec(
        id=t.id,
        depends_on=list(t.depends_on),
        priority=t.priority,
        estimate_seconds=t.estimate or 0.0,
        kind=t.kind,
        branch=t.branch,
        requires=sorted(t.requires),
        payload_json="" if t.payload is None else json.dumps(t.payload),
        max_attempts=t.max_attempts,
        blocks=list(getattr(t, "blocks", ())),
        timeout_seconds=getattr(t, "timeout", None) or 0.0,
        retry_backoff=_backoff_to_proto(getattr(t, "retry_backoff", None)),
    )


def _backoff_to_proto(b: Any) -> client_pb2.RetryBackoff | None:
    """Any object with ``base`` and ``cap`` seconds (``None``: unset)."""
    if b is None:
        return None
    return client_pb2.RetryBackoff(base_seconds=b.base, cap_seconds=b.cap)


def project_to_proto(p: ProjectLike) -> client_pb2.ProjectSpec:
    return client_pb2.ProjectSpec(project_id=p.id, tasks=[task_to_proto(t) for t in p.tasks])


def submitted_from_proto(m: client_pb2.SubmitProjectResponse) -> Submitted:
    return Submitted(project_id=m.project_id, revision=m.revision, task_count=m.task_count)


def leader_from_proto(m: common_pb2.LeaderInfo) -> Leader:
    return Leader(leader_id=m.leader_id, address=m.address, term=m.term)


def task_status_from_proto(m: client_pb2.TaskStatus) -> TaskStatus:
    return TaskStatus(
        project_id=m.project_id,
        task_id=m.task_id,
        state=state_from_proto(m.state),
        agent_id=m.agent_id,
        attempt=m.attempt,
        reason=m.reason,
        started_at=m.started_at,
        finished_at=m.finished_at,
        result=json.loads(m.result_json) if m.result_json else None,
        output_tail=m.output_tail,
        deadline_at=m.deadline_at,
        retry_at=m.retry_at,
        last_failure=m.last_failure,
        progress=m.progress if m.HasField("progress") else None,
        progress_note=m.progress_note,
    )


def project_status_from_proto(m: client_pb2.ProjectStatus) -> ProjectStatus:
    return ProjectStatus(
        project_id=m.project_id,
        counts=dict(m.counts),
        finished=m.finished,
        tasks=tuple(task_status_from_proto(t) for t in m.tasks),
        submitted_at=m.submitted_at,
        finished_at=m.finished_at,
        critical_path_seconds=m.critical_path_seconds,
        total_work_seconds=m.total_work_seconds,
    )


def status_from_proto(m: client_pb2.GetStatusResponse) -> ClusterStatus:
    return ClusterStatus(
        leader=leader_from_proto(m.leader),
        projects=tuple(project_status_from_proto(p) for p in m.projects),
        agents=tuple(
            AgentStatus(
                agent_id=a.agent_id,
                capabilities=tuple(a.capabilities),
                slots=a.slots,
                running=a.running,
                queued=a.queued,
                load_seconds=a.load_seconds,
                connected=a.connected,
                speed_factor=a.speed_factor,
            )
            for a in m.agents
        ),
        metrics=dict(m.metrics),
        stale=m.stale,
        stale_reason=m.stale_reason,
    )


def event_from_proto(m: client_pb2.ProjectEvent) -> ProjectEvent:
    return ProjectEvent(
        project_id=m.project_id,
        task=task_status_from_proto(m.task),
        revision=m.revision,
        project_finished=m.project_finished,
    )
