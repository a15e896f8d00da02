"""JSON encoding of etcd values. Compact, sorted, versionless but tolerant:
decoders ignore unknown fields and default missing ones, so a newer writer
does not break an older reader.
"""

from __future__ import annotations

from typing import Any

import orjson

from workhive.coordinator.etcd.types import KeyValue, ProjectMeta, TaskRecord
from workhive.coordinator.model import AgentInfo, Claim, TaskKey, TaskResult, TaskState
from workhive.coordinator.task_schema import task_from_stored, task_to_dict


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON with sorted keys (deterministic bytes)."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def loads(data: bytes) -> Any:
    return orjson.loads(data)


# -- task record (the spec's fields: the one task schema, task_schema.py) ----


def encode_task(record: TaskRecord) -> bytes:
    return dumps(
        {"spec": task_to_dict(record.spec), "state": str(record.state), "attempt": record.attempt}
    )


def decode_task(key: TaskKey, kv: KeyValue) -> TaskRecord:
    d = loads(kv.value)
    return TaskRecord(
        key=key,
        spec=task_from_stored(d["spec"]),
        state=TaskState(d.get("state", "pending")),
        attempt=int(d.get("attempt", 1)),
        mod_revision=kv.mod_revision,
        create_revision=kv.create_revision,
    )


# -- claims --------------------------------------------------------------------


def encode_claim(
    agent: str, attempt: int, started: bool, term: int = 0, after: tuple[str, ...] = ()
) -> bytes:
    """``term`` is the fencing term of the leader that wrote the claim; kept
    so an audit of etcd's history can prove no deposed leader wrote one.
    ``after``: a chained claim's unfinished dependencies (``Claim.after``)."""
    d: dict[str, object] = {"agent": agent, "attempt": attempt, "started": started, "term": term}
    if after:
        d["after"] = list(after)
    return dumps(d)


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
        after=tuple(d.get("after", ())),
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
            "chains": a.chains,
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
        chains=bool(d.get("chains", False)),
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
