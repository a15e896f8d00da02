"""The agent's request stream: each write carries what queued up behind it."""

from __future__ import annotations

from workhive.agent._session import Session
from workhive.v1 import agent_pb2


def _hb(seq: int) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat(seq=seq))


def test_the_hello_goes_alone_and_what_follows_goes_as_one_batch() -> None:
    s = Session("127.0.0.1:1")
    s.send(agent_pb2.AgentMessage(hello=agent_pb2.Hello(agent_id="a1")))
    for seq in (1, 2, 3):
        s.send(_hb(seq))
    s.half_close()
    writes = list(s.requests())
    assert [w.WhichOneof("kind") for w in writes] == ["hello", "batch"]
    assert [m.heartbeat.seq for m in writes[1].batch.messages] == [1, 2, 3]


def test_a_lone_message_is_sent_as_is() -> None:
    s = Session("127.0.0.1:1")
    s.send(_hb(1))
    s.half_close()
    assert list(s.requests()) == [_hb(1)]
