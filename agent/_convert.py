"""The protobuf edge: the only module that builds or reads ``workhive.v1`` messages
for task data (CONVENTIONS lesson 5)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from workhive.v1 import agent_pb2, common_pb2

from ._types import Outcome, Task, TaskKey


def key_to_proto(key: TaskKey) -> common_pb2.TaskRef:
    return common_pb2.TaskRef(
        project_id=key.project_id, task_id=key.task_id, fence=key.fence, attempt=key.attempt
    )


def key_from_proto(ref: common_pb2.TaskRef) -> TaskKey:
    return TaskKey(ref.project_id, ref.task_id, ref.fence, ref.attempt)


def task_from_assign(msg: agent_pb2.Assign) -> Task:
    return Task(
        project_id=msg.task.project_id,
        task_id=msg.task.task_id,
        attempt=msg.task.attempt,
        payload=Task.decode_payload(msg.payload_json),
        priority=msg.priority,
        kind=msg.kind,
        fence=msg.task.fence,
        branch=msg.branch,
        estimate_seconds=msg.estimate_seconds,
        term=msg.term,
        payload_json=msg.payload_json,
        inputs=json.loads(msg.inputs_json) if msg.inputs_json else {},
    )


def hello(
    *,
    agent_id: str,
    capabilities: Iterable[str],
    slots: int,
    prefetch: int,
    resume_lease_id: int,
    sdk_version: str,
    held: Iterable[TaskKey],
    pull: bool = False,
) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(
        hello=agent_pb2.Hello(
            agent_id=agent_id,
            capabilities=list(capabilities),
            slots=slots,
            prefetch=prefetch,
            resume_lease_id=resume_lease_id,
            sdk_version=sdk_version,
            held=[key_to_proto(k) for k in held],
            pull=pull,
            batches=True,
            ack_batches=True,
            chains=not pull,
        )
    )


def heartbeat(seq: int, running: Iterable[TaskKey]) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(
        heartbeat=agent_pb2.Heartbeat(seq=seq, running=[key_to_proto(k) for k in running])
    )


def start_request(key: TaskKey) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(start=agent_pb2.StartRequest(task=key_to_proto(key)))


def progress(key: TaskKey, fraction: float, note: str) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(
        progress=agent_pb2.TaskProgress(task=key_to_proto(key), fraction=fraction, note=note)
    )


def drain(return_queue: bool = True) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(drain=agent_pb2.Drain(return_queue=return_queue))


def outcome(o: Outcome) -> agent_pb2.AgentMessage:
    ref = key_to_proto(o.key)
    if o.succeeded:
        return agent_pb2.AgentMessage(
            completed=agent_pb2.TaskCompleted(
                task=ref,
                duration_seconds=o.duration_seconds,
                output_tail=o.output_tail,
                result_json=o.result_json,
                new_tasks_json=o.new_tasks_json,
            )
        )
    return agent_pb2.AgentMessage(
        failed=agent_pb2.TaskFailed(
            task=ref,
            reason=o.reason,
            exit_code=o.exit_code,
            duration_seconds=o.duration_seconds,
            output_tail=o.output_tail,
            retryable=o.retryable,
            released=o.released,
        )
    )


def claim_request(seq: int, wait: float) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(
        claim=agent_pb2.ClaimRequest(seq=seq, wait_ms=max(0, int(wait * 1000)))
    )
