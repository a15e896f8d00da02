"""TLS, mutual TLS and bearer tokens on a real coordinator (in-process, real etcd).

A client without valid credentials is refused: plaintext, a server it does
not trust, no client certificate or one from another CA (the handshake
fails: UNAVAILABLE), no or an unknown token (UNAUTHENTICATED). A token is
bound to one identity (PERMISSION_DENIED otherwise). Health stays open, and a
plaintext health-only port serves the kubelet's probes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.harness.etcd_process import free_port
from tests.security.conftest import (
    HOST,
    PKI,
    TOKENS,
    NodeThread,
    RawAgent,
    base_settings,
    bearer,
    coordinator,
)
from workhive.client import Client, WorkhiveError
from workhive.coordinator.service.errors import reason_of
from workhive.coordinator.service.security import SecurityError, parse_tokens
from workhive.v1 import agent_pb2, agent_pb2_grpc, client_pb2, client_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
Code = grpc.StatusCode


@pytest.fixture(scope="module")
def secure(pki: PKI, tokens_file: Path, etcd_server: Any) -> Iterator[tuple[NodeThread, int]]:
    url = etcd_server if isinstance(etcd_server, str) else etcd_server.endpoints[0]
    health_port = free_port()
    s = base_settings(
        url,
        tls_cert=str(pki.server[0]),
        tls_key=str(pki.server[1]),
        tls_ca=str(pki.ca.path),
        auth_tokens_file=str(tokens_file),
        health_listen=f"{HOST}:{health_port}",
    )
    with coordinator(s) as node:
        yield node, health_port


def status(channel: grpc.Channel, metadata: Any = ()) -> client_pb2.GetStatusResponse:
    return client_pb2_grpc.ClientServiceStub(channel).GetStatus(
        client_pb2.GetStatusRequest(), timeout=5, metadata=metadata
    )


def code_of(fn: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value.code()


def test_valid_mtls_and_client_token_are_served(pki: PKI, secure: tuple[NodeThread, int]) -> None:
    node, _ = secure
    with grpc.secure_channel(node.address, pki.creds(client=pki.agent)) as ch:
        assert status(ch, bearer("*client*")).leader.leader_id == node.node.id
    # the client library and its TLS options
    creds = pki.creds(client=pki.agent)
    with Client([node.address], credentials=creds, token=TOKENS["*client*"]) as c:
        assert c.status().leader.leader_id == node.node.id
    with Client([node.address], credentials=creds, timeout=2) as c:
        with pytest.raises(WorkhiveError) as info:
            c.status()
        assert info.value.code == "UNAUTHENTICATED"


@pytest.mark.parametrize("how", ["plaintext", "untrusted server", "no client cert", "rogue cert"])
def test_a_client_without_valid_transport_credentials_is_refused(
    how: str, pki: PKI, secure: tuple[NodeThread, int]
) -> None:
    node, _ = secure
    if how == "plaintext":
        ch = grpc.insecure_channel(node.address)
    elif how == "untrusted server":  # trusts another CA: the coordinator's cert fails
        ch = grpc.secure_channel(node.address, pki.creds(ca=pki.rogue_ca.path, client=pki.agent))
    elif how == "no client cert":
        ch = grpc.secure_channel(node.address, pki.creds())
    else:  # a client certificate signed by a CA the coordinator does not trust
        ch = grpc.secure_channel(node.address, pki.creds(client=pki.rogue))
    with ch:
        assert code_of(lambda: status(ch, bearer("*client*"))) == Code.UNAVAILABLE
        hs = health_pb2_grpc.HealthStub(ch)
        assert code_of(lambda: hs.Check(health_pb2.HealthCheckRequest(), timeout=5)) == (
            Code.UNAVAILABLE
        )


@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Bearer not-a-known-token-123456"),), (("authorization", "x"),)],
    ids=["no token", "unknown token", "not bearer"],
)
def test_no_or_unknown_token_is_unauthenticated(
    metadata: Any, pki: PKI, secure: tuple[NodeThread, int]
) -> None:
    node, _ = secure
    with grpc.secure_channel(node.address, pki.creds(client=pki.agent)) as ch:
        with pytest.raises(grpc.RpcError) as info:
            status(ch, metadata)
        assert info.value.code() == Code.UNAUTHENTICATED
        assert reason_of(info.value)[0] == "UNAUTHENTICATED_AGENT"
        agents = agent_pb2_grpc.AgentServiceStub(ch)
        assert (
            code_of(lambda: agents.GetLeader(agent_pb2.GetLeaderRequest(), metadata=metadata))
            == Code.UNAUTHENTICATED
        )
        raw = RawAgent(ch, metadata)
        raw.hello("agent-a")
        assert raw.error().code() == Code.UNAUTHENTICATED
        # health and reflection need no token
        hs = health_pb2_grpc.HealthStub(ch)
        assert hs.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1


def test_a_token_is_bound_to_its_agent(pki: PKI, secure: tuple[NodeThread, int]) -> None:
    node, _ = secure
    with grpc.secure_channel(node.address, pki.creds(client=pki.agent)) as ch:
        agents = agent_pb2_grpc.AgentServiceStub(ch)
        # agent-a's token, Hello as agent-b
        raw = RawAgent(ch, bearer("agent-a"))
        raw.hello("agent-b")
        err = raw.error()
        assert err.code() == Code.PERMISSION_DENIED, err
        assert "agent-a" in (err.details() or "")
        # ... or agent-b in the metadata the SDK sends
        raw = RawAgent(ch, (*bearer("agent-a"), ("workhive-agent-id", "agent-b")))
        raw.hello("agent-a")
        assert raw.error().code() == Code.PERMISSION_DENIED
        # ... or a heartbeat for agent-b's lease
        hb = agent_pb2.HeartbeatRequest(agent_id="agent-b", lease_id=1)
        assert (
            code_of(lambda: agents.Heartbeat(hb, timeout=5, metadata=bearer("agent-a")))
            == Code.PERMISSION_DENIED
        )
        # an agent token cannot use the client API, a client token cannot be an agent
        assert code_of(lambda: status(ch, bearer("agent-a"))) == Code.PERMISSION_DENIED
        raw = RawAgent(ch, bearer("*client*"))
        raw.hello("agent-a")
        assert raw.error().code() == Code.PERMISSION_DENIED
        # the rightful owner is welcomed
        raw = RawAgent(ch, (*bearer("agent-a"), ("workhive-agent-id", "agent-a")))
        raw.hello("agent-a")
        welcome = raw.next("welcome").welcome
        assert welcome.lease_id and welcome.coordinator_id == node.node.id
        raw.send(drain=agent_pb2.Drain(return_queue=True))
        raw.close()


def test_health_only_port_is_plaintext_and_serves_nothing_else(
    secure: tuple[NodeThread, int],
) -> None:
    _, port = secure
    with grpc.insecure_channel(f"{HOST}:{port}") as ch:
        hs = health_pb2_grpc.HealthStub(ch)
        for service in ("", "workhive.v1.AgentService", "workhive.v1.ClientService"):
            resp = hs.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        assert code_of(lambda: status(ch, bearer("*client*"))) == Code.UNIMPLEMENTED
        agents = agent_pb2_grpc.AgentServiceStub(ch)
        assert (
            code_of(lambda: agents.GetLeader(agent_pb2.GetLeaderRequest(), timeout=5))
            == Code.UNIMPLEMENTED
        )


def test_tokens_file_formats() -> None:
    lines = parse_tokens("# comment\nagent-1:aaaaaaaaaaaaaaaaaaaa\n*client*:bbbbbbbbbbbbbbbbbbbb\n")
    assert sorted((i.name, i.agent, i.role) for i in lines.values()) == [
        ("*client*", False, "admin"),
        ("agent-1", True, ""),
    ]
    yml = parse_tokens("agent-1: [aaaaaaaaaaaaaaaaaaaa, cccccccccccccccccccc]\n")
    assert [i.name for i in yml.values()] == ["agent-1", "agent-1"]
    roles = parse_tokens(
        "clients:\n  ci: {token: aaaaaaaaaaaaaaaaaaaa, role: submit, projects: ci-}\n"
    )
    (ci,) = roles.values()
    assert (ci.name, ci.agent, ci.role, ci.projects) == ("ci", False, "submit", "ci-")
    assert parse_tokens('{"agent-2": "dddddddddddddddddddd"}')
    for bad in (
        "agent-1: short",
        "- a\n- b\n",
        "a: [1]",
        "a: aaaaaaaaaaaaaaaaaaaa\nb: aaaaaaaaaaaaaaaaaaaa",
        "clients:\n  x: {token: aaaaaaaaaaaaaaaaaaaa, role: root}\n",
        "clients:\n  x: {token: aaaaaaaaaaaaaaaaaaaa, colour: red}\n",
        "clients:\n  x: {role: read}\n",
    ):
        with pytest.raises(SecurityError) as info:
            parse_tokens(bad)
        assert "auth_tokens_file" in str(info.value)
        assert "aaaaaaaaaaaaaaaaaaaa" not in str(info.value)


def test_tokens_are_reloaded_when_the_file_changes(tmp_path: Path) -> None:
    from workhive.coordinator.service.security import TokenStore

    f = tmp_path / "tokens"
    f.write_text(f"agent-a:{TOKENS['agent-a']}\n")
    now = [0.0]
    store = TokenStore(str(f), clock=lambda: now[0])
    assert store.identity(TOKENS["agent-a"]).name == "agent-a"  # type: ignore[union-attr]
    f.write_text(f"agent-b:{TOKENS['agent-b']}\n")
    import os

    os.utime(f, (1, 1))
    now[0] += 5
    assert store.identity(TOKENS["agent-a"]) is None
    assert store.identity(TOKENS["agent-b"]).name == "agent-b"  # type: ignore[union-attr]
    f.write_text("garbage")  # a broken file keeps the previous tokens
    os.utime(f, (2, 2))
    now[0] += 5
    assert store.identity(TOKENS["agent-b"]).name == "agent-b"  # type: ignore[union-attr]


def test_an_agent_pool_token_acts_as_any_agent_id_with_its_prefix() -> None:
    (pool,) = parse_tokens('"workhive-agent-*": aaaaaaaaaaaaaaaaaaaa\n').values()
    assert pool.agent and pool.is_agent("workhive-agent-7d9f8-abcde")
    assert not pool.is_agent("workhive-agent-") and not pool.is_agent("other-agent")
