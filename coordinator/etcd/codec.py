"""JSON encoding of etcd values. Compact, sorted, versionless but tolerant:
decoders ignore unknown fields and default missing ones, so a newer writer
does not break an older reader.
"""

from __future__ import annotations

from typing import Any

import orjson

from workhive.coordinator.etcd.types import KeyValue, ProjectMeta, TaskRecord
from workhive.coordinator.model import AgentInfo, Claim, TaskKey, TaskResult, TaskSpec, TaskState


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON with sorted keys (deterministic bytes)."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def loads(data: bytes) -> Any:
    return orjson.loads(data)


# -- task spec / record ------------------------------------------------------


def spec_to_dict(spec: TaskSpec) -> dict[str, Any]:
    d: dict[str, Any] = {"id": spec.id}
    if spec.depends_on:
        d["depends_on"] = list(spec.depends_on)
    d["priority"] = spec.priority
    if spec.estimate is not None:
        d["estimate"] = spec.estimate
    if spec.kind:
        d["kind"] = spec.kind
    if spec.branch:
        d["branch"] = spec.branch
    if spec.requires:
        d["requires"] = sorted(spec.requires)
    if spec.payload is not None:
        d["payload"] = spec.payload
    d["max_attempts"] = spec.max_attempts
    if spec.duration is not None:
        d["duration"] = spec.duration
    return d


def spec_from_dict(d: dict[str, Any]) -> TaskSpec:
    return TaskSpec(
        id=d["id"],
        depends_on=tuple(d.get("depends_on", ())),
        priority=int(d.get("priority", 5)),
        estimate=d.get("estimate"),
        kind=d.get("kind", ""),
        branch=d.get("branch", ""),
        requires=frozenset(d.get("requires", ())),
        payload=d.get("payload"),
        max_attempts=int(d.get("max_attempts", 3)),
        duration=d.get("duration"),
    )


def encode_task(record: TaskRecord) -> bytes:
    return dumps(
        {"spec": spec_to_dict(record.spec), "state": str(record.state), "attempt": record.attempt}
    )


def decode_task(key: TaskKey, kv: KeyValue) -> TaskRecord:
    d = loads(kv.value)
    return TaskRecord(
        key=key,
        spec=spec_from_dict(d["spec"]),
        state=TaskState(d.get("state", "pending")),
        attempt=int(d.get("attempt", 1)),
        mod_revision=kv.mod_revision,
        create_revision=kv.create_revision,
    )


# -- claims --------------------------------------------------------------------


def encode_claim(agent: str, attempt: int, started: bool, term: int = 0) -> bytes:
    """``term`` is the fencing term of the leader that wrote the claim; kept
    so an audit of etcd's history can prove no deposed leader wrote one."""
    return dumps({"agent": agent, "attempt": attempt, "started": started, "term": term})


def decode_claim(key: TaskKey, kv: KeyValue) -> Claim:
    d = loads(kv.value)
    return Claim(
        key=key,
        agent=d["agent"],
        attempt=int(d.get("attempt", 1)),
        started=bool(d.get("started", False)),
        fence=kv.create_revision,
        mod_revision=kv.mod_revision,
        lease_id=kv.lease,
    )


# -- results -------------------------------------------------------------------


def encode_result(r: TaskResult) -> bytes:
    """``result`` (the task's JSON result) is embedded as JSON, not as text,
    and only when there is one."""
    d: dict[str, Any] = {
        "state": str(r.state),
        "agent": r.agent,
        "attempt": r.attempt,
        "reason": r.reason,
        "duration": r.duration,
        "output_tail": r.output_tail,
        "finished_at": r.finished_at,
    }
    if r.result_json:
        d["result"] = orjson.Fragment(r.result_json)
    return dumps(d)


def decode_result(key: TaskKey, kv: KeyValue) -> TaskResult:
    d = loads(kv.value)
    return TaskResult(
        key=key,
        state=TaskState(d["state"]),
        agent=d.get("agent", ""),
        attempt=int(d.get("attempt", 0)),
        reason=d.get("reason", ""),
        duration=float(d.get("duration", 0.0)),
        output_tail=d.get("output_tail", ""),
        finished_at=float(d.get("finished_at", 0.0)),
        result_json=orjson.dumps(d["result"]).decode() if "result" in d else "",
    )


# -- agents, projects, candidates ----------------------------------------------


def encode_agent(a: AgentInfo) -> bytes:
    return dumps(
        {
            "id": a.id,
            "capabilities": sorted(a.capabilities),
            "slots": a.slots,
            "prefetch": a.prefetch,
            "pull": a.pull,
        }
    )


def decode_agent(kv: KeyValue) -> AgentInfo:
    d = loads(kv.value)
    return AgentInfo(
        id=d["id"],
        capabilities=frozenset(d.get("capabilities", ())),
        slots=int(d.get("slots", 1)),
        prefetch=int(d.get("prefetch", 1)),
        lease_id=kv.lease,
        pull=bool(d.get("pull", False)),
    )


def encode_meta(m: ProjectMeta) -> bytes:
    return dumps(
        {
            "id": m.id,
            "task_count": m.task_count,
            "submitted_at": m.submitted_at,
            "source": m.source,
            "extra": m.extra,
        }
    )


def decode_meta(kv: KeyValue) -> ProjectMeta:
    d = loads(kv.value)
    return ProjectMeta(
        id=d["id"],
        task_count=int(d["task_count"]),
        submitted_at=float(d.get("submitted_at", 0.0)),
        source=d.get("source", ""),
        extra=dict(d.get("extra", {})),
        mod_revision=kv.mod_revision,
    )


def encode_candidate(cid: str, address: str) -> bytes:
    return dumps({"id": cid, "address": address})


def decode_candidate(data: bytes) -> tuple[str, str]:
    d = loads(data)
    return str(d.get("id", "")), str(d.get("address", ""))
