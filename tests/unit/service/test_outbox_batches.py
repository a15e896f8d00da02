"""An agent session's outbox leaves in batches: what queued up goes in one write."""

from __future__ import annotations

import asyncio

from workhive.coordinator.model import AgentInfo
from workhive.coordinator.service.agent_hub import AgentConn
from workhive.v1 import agent_pb2, common_pb2


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


def _ref(task: str) -> common_pb2.TaskRef:
    return common_pb2.TaskRef(project_id="p", task_id=task, fence=1)


def test_acks_to_an_agent_that_reads_them_batched_leave_as_one_message_where_the_first_was() -> (
    None
):
    async def go() -> agent_pb2.CoordinatorMessage:
        conn = AgentConn(_conn(True).info, 7, batches=True, ack_batches=True)
        conn.ack(_ref("t1"))
        conn.push(_ack(9))
        conn.ack(_ref("t2"))
        conn.ack(_ref("t3"))
        return conn.next_write(await conn.outbox.get())[0]

    write = asyncio.run(go())
    acks = write.batch.messages[0].completion_ack
    assert [acks.task.task_id, *(r.task_id for r in acks.more)] == ["t1", "t2", "t3"]
    assert [m.WhichOneof("kind") for m in write.batch.messages] == [
        "completion_ack",
        "heartbeat_ack",
    ]


def test_an_ack_after_the_write_that_carried_the_others_goes_in_the_next_write() -> None:
    async def go() -> list[list[str]]:
        conn = AgentConn(_conn(True).info, 7, batches=True, ack_batches=True)
        conn.ack(_ref("t1"))
        first = conn.next_write(await conn.outbox.get())[0]
        conn.ack(_ref("t2"))
        second = conn.next_write(await conn.outbox.get())[0]
        return [
            [w.completion_ack.task.task_id, *(r.task_id for r in w.completion_ack.more)]
            for w in (first, second)
        ]

    assert asyncio.run(go()) == [["t1"], ["t2"]]


def test_an_agent_that_does_not_read_batched_acks_gets_one_ack_per_completion() -> None:
    async def go() -> list[str]:
        conn = _conn(batches=True)
        conn.ack(_ref("t1"))
        conn.ack(_ref("t2"))
        write = conn.next_write(await conn.outbox.get())[0]
        assert all(not m.completion_ack.more for m in write.batch.messages)
        return [m.completion_ack.task.task_id for m in write.batch.messages]

    assert asyncio.run(go()) == ["t1", "t2"]
