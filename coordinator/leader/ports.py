"""What the leader exchanges with agents, in domain types, and the port it
speaks through.

The leader never sees protobuf or gRPC: the service layer turns agent
messages into :class:`Hello`, :class:`Report` and :class:`Gone` inputs, and
implements :class:`AgentPort` (``service.agent_hub.AgentHub``) by turning its
calls into messages on the agent's session. Contract of the port: calls never
block and never fail; a message for an agent with no open session waits in a
bounded mailbox until it reconnects (or is dropped by ``forget``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from workhive.coordinator.model import AgentInfo, Claim, TaskRef, TaskSpec
from workhive.coordinator.scheduling import Addition


@dataclass(frozen=True, slots=True)
class Hello:
    """An agent opened a session on ``lease_id`` (``resumed``: a lease it had)
    and holds ``held`` (what it runs, has queued or awaits an ack for)."""

    info: AgentInfo
    lease_id: int
    resumed: bool
    held: tuple[TaskRef, ...] = ()


@dataclass(frozen=True, slots=True)
class Report:
    """An agent's completion or failure of a task it holds."""

    agent_id: str
    lease_id: int
    ref: TaskRef
    ok: bool
    reason: str = ""
    retryable: bool = True
    duration: float = 0.0
    output_tail: str = ""
    result_json: str = ""  # checked by the edge (coordinator/results.py)
    released: bool = False  # handed back unfinished: ready again, no attempt spent
    children: Addition | None = None  # tasks spawned with this completion (same txn)
    refusal: str = ""  # the edge refused the completion (e.g. bad new tasks): hand it back


@dataclass(frozen=True, slots=True)
class Gone:
    """The agent's current session on ``lease_id`` ended (``graceful``: drained)."""

    agent_id: str
    lease_id: int
    graceful: bool


class AgentPort(Protocol):
    """How the leader speaks to agents (see module docstring)."""

    def assign(
        self, claim: Claim, spec: TaskSpec, term: int, inputs: Mapping[str, str] | None = None
    ) -> None:
        """Hand the claimed task to its agent (started or to queue), with its
        parents' results (``inputs``: parent id -> result JSON text)."""

    def claim_empty(self, agent_id: str, seq: int) -> None:
        """The pull agent's request ``seq`` found no task within its wait."""

    def grant(self, claim: Claim) -> None:
        """The agent may start the queued task now."""

    def revoke(self, agent_id: str, ref: TaskRef, reason: str) -> None:
        """The agent must drop the task (its claim moved or ended)."""

    def ack(self, agent_id: str, ref: TaskRef) -> None:
        """The agent's report of ``ref`` committed."""

    def reject(self, agent_id: str, ref: TaskRef, reason: str, invalid: bool = False) -> None:
        """The agent's report of ``ref`` was refused: stale fence, or
        (``invalid``) the tasks it would spawn broke a rule."""

    def connected(self, agent_id: str) -> bool:
        """The agent has an open session on this replica."""

    def session_lease(self, agent_id: str) -> int:
        """The lease of the agent's open session (0: none)."""

    def session_count(self) -> int:
        """Open sessions on this replica."""

    def forget(self, agent_id: str) -> None:
        """Drop mail waiting for an agent that is gone for good."""
