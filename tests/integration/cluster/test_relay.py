"""A follower relays the session of an agent that cannot reach the leader
(docs/failover.md, "Agents that cannot reach the leader"): real coordinator
processes and etcd, raw gRPC sessions on 127.0.0.1. The partition itself (the
agents cut from the leader, the followers not) is tests/partitions."""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable, Iterator

import grpc
import pytest

from tests.integration.cluster.conftest import Harness
from tests.integration.cluster.test_cluster import _follower_channel
from workhive.coordinator.service.errors import reason_of
from workhive.v1 import agent_pb2, agent_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

Make = Callable[..., Harness]
RELAY = (("workhive-relay", "1"),)


class RawSession:
    """One ``AgentService.Session`` call whose requests a test sends one by one."""

    def __init__(self, channel: grpc.Channel, metadata: tuple[tuple[str, str], ...]) -> None:
        self._out: queue.Queue[agent_pb2.AgentMessage | None] = queue.Queue()
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        self.call = stub.Session(self._requests(), metadata=metadata, timeout=30)

    def _requests(self) -> Iterator[agent_pb2.AgentMessage]:
        while (msg := self._out.get()) is not None:
            yield msg

    def send(self, msg: agent_pb2.AgentMessage) -> None:
        self._out.put(msg)

    def next(self) -> agent_pb2.CoordinatorMessage:
        return next(self.call)

    def close(self) -> None:
        self._out.put(None)
        self.call.cancel()


def _hello(agent_id: str) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(hello=agent_pb2.Hello(agent_id=agent_id, slots=1, prefetch=1))


def _wait_registered(h: Harness, agent_id: str) -> None:
    deadline = time.monotonic() + 10
    while agent_id not in {a.agent_id for a in h.status().agents}:
        assert time.monotonic() < deadline, f"{agent_id} not registered: {h.status().agents}"
        time.sleep(0.05)


@contextlib.contextmanager
def _session(channel: grpc.Channel, agent_id: str, relay: bool) -> Iterator[RawSession]:
    s = RawSession(channel, RELAY if relay else ())
    s.send(_hello(agent_id))
    try:
        yield s
    finally:
        s.close()


def test_a_follower_asked_to_relay_welcomes_the_agent_from_the_leader(make_cluster: Make) -> None:
    h = make_cluster().start(coordinators=2)
    channel, _ = _follower_channel(h)
    leader = h.wait_leader().leader.leader_id
    with _session(channel, "relayed-1", relay=True) as s:
        first = s.next()
        assert first.WhichOneof("kind") == "welcome"
        assert first.welcome.coordinator_id == leader
        assert first.welcome.lease_id > 0
        # the session is the leader's: its heartbeats are acknowledged through the relay
        s.send(agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat(seq=7)))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            msg = s.next()
            if msg.WhichOneof("kind") == "heartbeat_ack":
                assert msg.heartbeat_ack.seq == 7 and msg.heartbeat_ack.ttl_seconds > 0
                break
        _wait_registered(h, "relayed-1")
    channel.close()


def test_a_follower_not_asked_to_relay_still_names_the_leader(make_cluster: Make) -> None:
    h = make_cluster().start(coordinators=2)
    channel, leader_address = _follower_channel(h)
    with _session(channel, "direct-1", relay=False) as s, pytest.raises(grpc.RpcError) as err:
        s.next()
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    reason, meta = reason_of(err.value)
    assert reason == "NOT_LEADER" and meta["leader_address"] == leader_address
    channel.close()


def test_the_leaders_refusal_reaches_a_relayed_agent_with_its_reason(make_cluster: Make) -> None:
    h = make_cluster().start(coordinators=2)
    channel, leader_address = _follower_channel(h)
    direct = grpc.insecure_channel(leader_address)
    with _session(direct, "twin", relay=False) as first:
        assert first.next().WhichOneof("kind") == "welcome"
        _wait_registered(h, "twin")
        with _session(channel, "twin", relay=True) as second, pytest.raises(grpc.RpcError) as err:
            second.next()
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert reason_of(err.value)[0] == "AGENT_ID_IN_USE"
    direct.close()
    channel.close()
