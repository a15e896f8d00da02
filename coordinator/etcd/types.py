"""Frozen value types returned by the etcd layer (no protobuf leaks out)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from workhive.coordinator.model import Claim, TaskKey, TaskResult, TaskSpec, TaskState


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One etcd key-value with its revisions (``lease`` 0 = none)."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """``projects/<pid>/tasks/<tid>``: spec plus durable state.

    ``state`` is one of PENDING, READY, SUCCEEDED, FAILED, CANCELLED: ASSIGNED
    and RUNNING are never stored here, they are the claim key's existence
    (see :func:`effective_state`). ``attempt`` is the number of the current or
    next attempt (1-based). ``mod_revision`` is what fenced CAS writes compare.
    """

    key: TaskKey
    spec: TaskSpec
    state: TaskState = TaskState.PENDING
    attempt: int = 1
    mod_revision: int = 0
    create_revision: int = 0


@dataclass(frozen=True, slots=True)
class ProjectMeta:
    """``projects/<pid>/meta``: written last by a submit; its presence = visible."""

    id: str
    task_count: int
    submitted_at: float = 0.0
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    mod_revision: int = 0


@dataclass(frozen=True, slots=True)
class Candidate:
    """A coordinator's election key: id, advertised address, term (create rev)."""

    id: str
    address: str
    term: int
    lease: int


def effective_state(
    record: TaskRecord, claim: Claim | None, result: TaskResult | None
) -> TaskState:
    """State a client sees: result > claim > record.

    A claim means ASSIGNED (RUNNING once started); a claim vanishing with its
    lease makes the task READY again at once, before any requeue write.
    """
    if result is not None:
        return result.state
    if record.state.terminal:
        return record.state
    if claim is not None:
        return TaskState.RUNNING if claim.started else TaskState.ASSIGNED
    return record.state


class Outcome(enum.StrEnum):
    """Per-item result of a batched CAS operation."""

    OK = "ok"  # applied
    CONFLICT = "conflict"  # a compare failed: state moved on; re-read and decide again
    NOT_LEADER = "not_leader"  # the leader fence failed: nothing applied, stop leading


@dataclass(frozen=True, slots=True)
class ItemResult:
    """Outcome of one item of a batch, with the revision it committed at.

    ``claim``: the claim the item wrote; ``record``: the task record a
    completion wrote (None when it wrote none, e.g. the same completion was
    committed before). Both are exactly what etcd stores at ``revision``.
    """

    outcome: Outcome
    revision: int = 0
    claim: Claim | None = None
    record: TaskRecord | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK
