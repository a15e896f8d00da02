"""An agent session's outbox leaves in batches: what queued up goes in one write."""

from __future__ import annotations

import asyncio

from workhive.coordinator.model import AgentInfo
from workhive.coordinator.service.agent_hub import AgentConn
from workhive.v1 import agent_pb2


def _ack(seq: int) -> agent_pb2.CoordinatorMessage:
    return agent_pb2.CoordinatorMessage(heartbeat_ack=agent_pb2.HeartbeatAck(seq=seq))


def _conn(batches: bool) -> AgentConn:
    info = AgentInfo(id="a1", capabilities=frozenset(), slots=1, prefetch=1, lease_id=7)
    return AgentConn(info, 7, batches=batches)


def _queued(conn: AgentConn, *items: agent_pb2.CoordinatorMessage | None) -> None:
    for item in items:
        conn.outbox.put_nowait(item)


def test_what_queued_behind_a_message_leaves_with_it_in_order() -> None:
    async def go() -> tuple[agent_pb2.CoordinatorMessage, bool]:
        conn = _conn(batches=True)
        _queued(conn, _ack(2), _ack(3))
        return conn.next_write(_ack(1))

    write, closed = asyncio.run(go())
    assert [m.heartbeat_ack.seq for m in write.batch.messages] == [1, 2, 3]
    assert not closed


def test_a_lone_message_is_not_wrapped() -> None:
    async def go() -> tuple[agent_pb2.CoordinatorMessage, bool]:
        return _conn(batches=True).next_write(_ack(1))

    write, closed = asyncio.run(go())
    assert write == _ack(1)
    assert not closed


def test_an_agent_that_does_not_read_batches_gets_messages_one_by_one() -> None:
    async def go() -> tuple[agent_pb2.CoordinatorMessage, bool, int]:
        conn = _conn(batches=False)
        _queued(conn, _ack(2))
        write, closed = conn.next_write(_ack(1))
        return write, closed, conn.outbox.qsize()

    assert asyncio.run(go()) == (_ack(1), False, 1)


def test_a_close_behind_the_batch_is_reported_and_nothing_after_it_is_sent() -> None:
    async def go() -> tuple[agent_pb2.CoordinatorMessage, bool, int]:
        conn = _conn(batches=True)
        _queued(conn, _ack(2), None, _ack(3))
        write, closed = conn.next_write(_ack(1))
        return write, closed, conn.outbox.qsize()

    write, closed, left = asyncio.run(go())
    assert [m.heartbeat_ack.seq for m in write.batch.messages] == [1, 2]
    assert closed
    assert left == 1
