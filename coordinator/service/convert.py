"""Protobuf <-> domain translation. Nothing else in the coordinator sees pb2.

``project_from_proto`` re-validates through the same loader as project files,
so a spec arriving over the wire obeys the same rules (and errors) as a file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from workhive.coordinator.model import (
    MAX_PAYLOAD_BYTES,
    LeaderInfo,
    ProjectSpec,
    TaskSpec,
    TaskState,
)
from workhive.coordinator.project_files import project_from_dict
from workhive.coordinator.scheduling.growth import Addition
from workhive.coordinator.task_schema import ProjectError, compact, task_from_dict
from workhive.v1 import client_pb2, common_pb2

_STATE_TO_PB = {
    TaskState.PENDING: common_pb2.TASK_STATE_PENDING,
    TaskState.READY: common_pb2.TASK_STATE_READY,
    TaskState.ASSIGNED: common_pb2.TASK_STATE_ASSIGNED,
    TaskState.RUNNING: common_pb2.TASK_STATE_RUNNING,
    TaskState.SUCCEEDED: common_pb2.TASK_STATE_SUCCEEDED,
    TaskState.FAILED: common_pb2.TASK_STATE_FAILED,
    TaskState.CANCELLED: common_pb2.TASK_STATE_CANCELLED,
}
_PB_TO_STATE = {v: k for k, v in _STATE_TO_PB.items()}
MAX_BLOCKS = 60  # blocks edges of one new task (each costs two txn operations)


def state_to_proto(state: TaskState | None) -> common_pb2.TaskState.ValueType:
    """``None`` (no such task) maps to TASK_STATE_UNKNOWN."""
    return common_pb2.TASK_STATE_UNKNOWN if state is None else _STATE_TO_PB[state]


def state_from_proto(value: common_pb2.TaskState.ValueType) -> TaskState | None:
    return _PB_TO_STATE.get(value)


def state_name(value: common_pb2.TaskState.ValueType) -> str:
    """Lower-case short name of a wire state: 'running', 'unknown', ..."""
    return common_pb2.TaskState.Name(value).removeprefix("TASK_STATE_").lower()


def leader_to_proto(leader: LeaderInfo | None) -> common_pb2.LeaderInfo:
    if leader is None:
        return common_pb2.LeaderInfo()
    return common_pb2.LeaderInfo(leader_id=leader.id, address=leader.address, term=leader.term)


def leader_from_proto(msg: common_pb2.LeaderInfo) -> LeaderInfo | None:
    if not msg.leader_id:
        return None
    return LeaderInfo(id=msg.leader_id, address=msg.address, term=msg.term)


def task_to_proto(task: TaskSpec) -> client_pb2.TaskSpec:
    return client_pb2.TaskSpec(
        id=task.id,
        depends_on=list(task.depends_on),
        priority=task.priority,
        estimate_seconds=task.estimate or 0.0,
        kind=task.kind,
        branch=task.branch,
        requires=sorted(task.requires),
        payload_json="" if task.payload is None else json.dumps(task.payload),
        max_attempts=task.max_attempts,
        timeout_seconds=task.timeout or 0.0,
        retry_backoff=None
        if task.retry_backoff is None
        else client_pb2.RetryBackoff(
            base_seconds=task.retry_backoff.base, cap_seconds=task.retry_backoff.cap
        ),
    )


def _payload(text: str, task_id: str, source: str) -> Any:
    """A task's ``payload_json``: JSON, at most MAX_PAYLOAD_BYTES and not nested
    too deep (the loader checks the depth; a parser's RecursionError is
    reported the same way)."""
    tid = task_id[:60] or None
    if len(text.encode()) > MAX_PAYLOAD_BYTES:
        raise ProjectError(
            f"payload_json is {len(text.encode())} bytes, limit {MAX_PAYLOAD_BYTES}",
            file=source,
            task=tid,
            field="payload",
        )
    try:
        return json.loads(text)
    except RecursionError:
        raise ProjectError("nested too deep", file=source, task=tid, field="payload") from None
    except ValueError as exc:
        raise ProjectError(
            f"payload_json is not JSON: {exc}", file=source, task=tid, field="payload"
        ) from None


def _task_dict(t: client_pb2.TaskSpec, source: str) -> dict[str, Any]:
    """A wire task as a task-schema dict: proto's zero values (unset) are
    left out, so the schema's defaults apply; ``priority`` 0 is kept."""
    raw = compact(
        {
            "id": t.id,
            "priority": t.priority,
            "depends_on": list(t.depends_on),
            "estimate": t.estimate_seconds or None,
            "kind": t.kind,
            "branch": t.branch,
            "requires": list(t.requires),
            "max_attempts": t.max_attempts or None,
            "timeout": t.timeout_seconds or None,
        }
    )
    if t.HasField("retry_backoff"):
        b = t.retry_backoff
        raw["retry_backoff"] = {"base": b.base_seconds, "cap": b.cap_seconds}
    if t.payload_json:  # a payload may itself be "" or []
        raw["payload"] = _payload(t.payload_json, t.id, source)
    return raw


def addition_from_proto(
    project_id: str, tasks: Sequence[client_pb2.TaskSpec], source: str = "<add>"
) -> Addition:
    """Validate each new task like a file's (the batch against the graph is
    the leader's check); raises ``ProjectError``."""
    specs = tuple(task_from_dict(_task_dict(t, source), i, source) for i, t in enumerate(tasks))
    blocks: dict[str, tuple[str, ...]] = {}
    for t in tasks:
        if t.blocks:
            if len(t.blocks) > MAX_BLOCKS:
                raise ProjectError(
                    f"{len(t.blocks)} entries, limit {MAX_BLOCKS}",
                    file=source,
                    task=t.id,
                    field="blocks",
                )
            blocks[t.id] = tuple(dict.fromkeys(t.blocks))
    return Addition(project_id, specs, blocks)


def project_to_proto(spec: ProjectSpec) -> client_pb2.ProjectSpec:
    return client_pb2.ProjectSpec(project_id=spec.id, tasks=[task_to_proto(t) for t in spec.tasks])


def project_from_proto(msg: client_pb2.ProjectSpec, source: str = "<request>") -> ProjectSpec:
    """Validate a wire spec; raises ``ProjectError`` exactly like a bad file."""
    tasks = [_task_dict(t, source) for t in msg.tasks]
    return project_from_dict({"project": msg.project_id, "tasks": tasks}, source)
