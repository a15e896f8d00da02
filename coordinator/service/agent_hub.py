"""Open agent sessions on this replica and the messages pushed to them.

``AgentHub`` implements the leader's ``AgentPort`` (``leader.ports``): the
leader speaks domain types; this module turns them into ``CoordinatorMessage``
protobufs on each session's outbox (an asyncio queue drained by the session's
gRPC handler). Messages for an agent with no open session wait in its mailbox
until it reconnects (bounded).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from workhive.coordinator.model import AgentInfo, Claim, LeaderInfo, TaskKey, TaskRef, TaskSpec
from workhive.coordinator.results import inputs_json
from workhive.coordinator.service.convert import leader_to_proto
from workhive.v1 import agent_pb2, common_pb2

MAILBOX_LIMIT = 10_000
MAX_BATCH = 512
"""Most coordinator messages sent as one stream write (a CoordinatorBatch)."""

_ACKS = agent_pb2.CoordinatorMessage()
"""Placeholder in an outbox for the acks pending on its session (``AgentConn.ack``)."""


def ref_to_proto(ref: TaskRef) -> common_pb2.TaskRef:
    return common_pb2.TaskRef(
        project_id=ref.key.project, task_id=ref.key.task, fence=ref.fence, attempt=ref.attempt
    )


def ref_from_proto(msg: common_pb2.TaskRef) -> TaskRef:
    return TaskRef(TaskKey(msg.project_id, msg.task_id), msg.fence, msg.attempt)


def task_ref(claim: Claim) -> common_pb2.TaskRef:
    return ref_to_proto(TaskRef.of(claim))


@dataclass
class AgentConn:
    """One open session: who the agent is, its lease, and its outbox.

    Acks to an agent that reads ``CompletionAck.more`` wait in ``acks``
    behind one placeholder in the outbox, where the first of them was
    pushed; the write that reaches the placeholder carries them all in one
    ``CompletionAck`` (one message per write, not one per completion)."""

    info: AgentInfo
    lease_id: int
    batches: bool = False  # the agent reads CoordinatorMessage.batch
    ack_batches: bool = False  # the agent reads CompletionAck.more
    outbox: asyncio.Queue[agent_pb2.CoordinatorMessage | None] = field(
        default_factory=asyncio.Queue
    )
    draining: bool = False
    acks: list[common_pb2.TaskRef] = field(default_factory=list)

    def push(self, msg: agent_pb2.CoordinatorMessage) -> None:
        self.outbox.put_nowait(msg)

    def ack(self, ref: common_pb2.TaskRef) -> None:
        """Acknowledge a completion: alone, or with the others pending (see class)."""
        if not self.ack_batches:
            self.push(
                agent_pb2.CoordinatorMessage(completion_ack=agent_pb2.CompletionAck(task=ref))
            )
            return
        if not self.acks:
            self.push(_ACKS)
        self.acks.append(ref)

    def _real(self, msg: agent_pb2.CoordinatorMessage) -> agent_pb2.CoordinatorMessage:
        """``msg``, or the pending acks in one message for their placeholder."""
        if msg is not _ACKS:
            return msg
        first, *more = self.acks
        self.acks = []
        return agent_pb2.CoordinatorMessage(
            completion_ack=agent_pb2.CompletionAck(task=first, more=more)
        )

    def next_write(
        self, first: agent_pb2.CoordinatorMessage
    ) -> tuple[agent_pb2.CoordinatorMessage, bool]:
        """``first`` and whatever else waits in the outbox, as one stream
        message (a batch, in order, for an agent that reads batches), and
        whether the outbox was closed behind them. Messages queue up while
        the previous write is in flight, so a turn's acks, grants and
        assignments to one agent leave in one write."""
        first = self._real(first)
        if not self.batches:
            return first, False
        more: list[agent_pb2.CoordinatorMessage] = []
        closed = False
        while len(more) < MAX_BATCH - 1:
            try:
                item = self.outbox.get_nowait()
            except asyncio.QueueEmpty:
                break
            if item is None:
                closed = True
                break
            more.append(self._real(item))
        if not more:
            return first, closed
        batch = agent_pb2.CoordinatorBatch(messages=[first, *more])
        return agent_pb2.CoordinatorMessage(batch=batch), closed

    def close(self) -> None:
        self.outbox.put_nowait(None)


class AgentHub:
    """Sessions by agent id (the latest wins) and mailboxes for absent agents."""

    def __init__(self) -> None:
        self.conns: dict[str, AgentConn] = {}
        self._mail: dict[str, deque[agent_pb2.CoordinatorMessage]] = {}

    def attach(self, conn: AgentConn) -> None:
        old = self.conns.get(conn.info.id)
        if old is not None and old is not conn:
            old.close()
        self.conns[conn.info.id] = conn
        for msg in self._mail.pop(conn.info.id, ()):
            conn.push(msg)

    def detach(self, conn: AgentConn) -> bool:
        """Forget ``conn`` if it is still the agent's current session."""
        if self.conns.get(conn.info.id) is conn:
            del self.conns[conn.info.id]
            return True
        return False

    def connected(self, agent_id: str) -> bool:
        return agent_id in self.conns

    def session_lease(self, agent_id: str) -> int:
        conn = self.conns.get(agent_id)
        return conn.lease_id if conn is not None else 0

    def session_count(self) -> int:
        return len(self.conns)

    def forget(self, agent_id: str) -> None:
        self._mail.pop(agent_id, None)

    def close_all(self, redirect_to: LeaderInfo | None = None) -> None:
        for conn in list(self.conns.values()):
            if redirect_to is not None:
                conn.push(
                    agent_pb2.CoordinatorMessage(
                        redirect=agent_pb2.Redirect(leader=leader_to_proto(redirect_to))
                    )
                )
            conn.close()
        self.conns.clear()
        self._mail.clear()

    def _send(self, agent_id: str, msg: agent_pb2.CoordinatorMessage) -> None:
        conn = self.conns.get(agent_id)
        if conn is not None:
            conn.push(msg)
            return
        box = self._mail.setdefault(agent_id, deque(maxlen=MAILBOX_LIMIT))
        box.append(msg)

    def drain(self, agent_id: str, reason: str) -> bool:
        """Ask a connected agent to drain; False if it has no session here."""
        conn = self.conns.get(agent_id)
        if conn is None:
            return False
        conn.push(agent_pb2.CoordinatorMessage(drain_request=agent_pb2.DrainRequest(reason=reason)))
        return True

    # -- what the leader says ------------------------------------------------

    def assign(
        self, claim: Claim, spec: TaskSpec, term: int, inputs: Mapping[str, str] | None = None
    ) -> None:
        self._send(
            claim.agent,
            agent_pb2.CoordinatorMessage(
                assign=agent_pb2.Assign(
                    task=task_ref(claim),
                    payload_json="" if spec.payload is None else json.dumps(spec.payload),
                    priority=spec.priority,
                    kind=spec.kind,
                    branch=spec.branch,
                    estimate_seconds=spec.estimate or 0.0,
                    started=claim.started,
                    term=term,
                    inputs_json=inputs_json(inputs or {}),
                    after=claim.after,
                )
            ),
        )

    def claim_empty(self, agent_id: str, seq: int) -> None:
        self._send(
            agent_id,
            agent_pb2.CoordinatorMessage(claim_empty=agent_pb2.ClaimEmpty(seq=seq)),
        )

    def grant(self, claim: Claim) -> None:
        self._send(
            claim.agent,
            agent_pb2.CoordinatorMessage(
                start_granted=agent_pb2.StartGranted(task=task_ref(claim))
            ),
        )

    def revoke(self, agent_id: str, ref: TaskRef, reason: str) -> None:
        self._send(
            agent_id,
            agent_pb2.CoordinatorMessage(
                revoke=agent_pb2.Revoke(task=ref_to_proto(ref), reason=reason)
            ),
        )

    def ack(self, agent_id: str, ref: TaskRef) -> None:
        conn = self.conns.get(agent_id)
        if conn is not None:
            conn.ack(ref_to_proto(ref))
            return
        self._send(
            agent_id,
            agent_pb2.CoordinatorMessage(
                completion_ack=agent_pb2.CompletionAck(task=ref_to_proto(ref))
            ),
        )

    def reject(self, agent_id: str, ref: TaskRef, reason: str, invalid: bool = False) -> None:
        self._send(
            agent_id,
            agent_pb2.CoordinatorMessage(
                completion_rejected=agent_pb2.CompletionRejected(
                    task=ref_to_proto(ref),
                    reason=common_pb2.INVALID_PROJECT if invalid else common_pb2.STALE_FENCE,
                    message=reason,
                )
            ),
        )
