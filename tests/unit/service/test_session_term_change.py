"""A session opened while the replica leads, whose term ends before it is
welcomed (the lease check awaits etcd), is refused rather than kept open on a
replica that no longer leads: there its heartbeats would keep the agent's
lease and claims alive while no work ever came (a mixed soak stalled on it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from workhive.coordinator.metrics import Metrics
from workhive.coordinator.model import AgentInfo, LeaderInfo
from workhive.coordinator.service.agent_hub import AgentHub
from workhive.coordinator.service.agent_service import AgentServicer
from workhive.v1 import agent_pb2

NEW_LEADER = LeaderInfo(id="c2", address="10.0.0.2:7000", term=9)


@dataclass
class _Driver:
    hellos: list[Any] = field(default_factory=list)

    def hello(self, hello: Any) -> None:
        self.hellos.append(hello)

    def registered(self, agent_id: str) -> AgentInfo | None:
        return None

    def gone(self, gone: Any) -> None:
        pass


@dataclass
class _Node:
    """A replica whose term ends while it grants the agent's lease."""

    driver: _Driver | None = field(default_factory=_Driver)
    leader_info: LeaderInfo | None = field(default_factory=lambda: LeaderInfo("c1", "x:1", 8))
    id: str = "c1"
    hub: AgentHub = field(default_factory=AgentHub)
    metrics: Metrics = field(default_factory=Metrics)
    agent_lease_ttl: int = 6
    heartbeat_interval_ms: int = 1000
    term_ends_on_grant: bool = True

    def leading(self) -> _Driver | None:
        return self.driver

    async def agent_lease(self, resume: int) -> tuple[int, bool]:
        await asyncio.sleep(0)
        if self.term_ends_on_grant:  # stepped down meanwhile; the new leader is known
            self.driver, self.leader_info = None, NEW_LEADER
        return 77, False

    async def register_agent(self, info: AgentInfo, lease: int) -> None:
        await asyncio.sleep(0)


class _Aborted(Exception):
    def __init__(self, status: Any) -> None:
        self.status = status


class _Context:
    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    async def abort_with_status(self, status: Any) -> None:
        raise _Aborted(status)


async def _hello_only() -> AsyncIterator[agent_pb2.AgentMessage]:
    yield agent_pb2.AgentMessage(hello=agent_pb2.Hello(agent_id="a1", slots=1))
    await asyncio.Event().wait()  # the agent keeps its stream open


async def _first_reply(node: _Node) -> tuple[agent_pb2.CoordinatorMessage, list[str]]:
    """The session's first message, and the agents attached while it is open."""
    session = AgentServicer(node).Session(_hello_only(), _Context())  # type: ignore[arg-type]
    try:
        return await anext(session), list(node.hub.conns)
    finally:
        await session.aclose()


def test_a_session_whose_term_ended_before_its_welcome_is_sent_to_the_new_leader() -> None:
    node = _Node()
    with pytest.raises(_Aborted) as refused:
        asyncio.run(_first_reply(node))
    assert "not the leader" in refused.value.status.details
    assert node.hub.conns == {}


def test_a_session_on_a_replica_that_still_leads_is_welcomed() -> None:
    node = _Node(term_ends_on_grant=False)
    reply, attached = asyncio.run(_first_reply(node))
    assert reply.welcome.lease_id == 77
    assert attached == ["a1"]
