"""etcd over TLS with client certificates, and etcd authentication with a
role limited to the workhive prefix (the recipe of docs/security.md).

The auth test runs the real ``workhive coordinator`` command with secrets
from a file and the environment, and checks that no secret reaches its logs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.harness.etcd_process import free_port
from tests.security.conftest import (
    HOST,
    PKI,
    TOKENS,
    EtcdProc,
    base_settings,
    bearer,
    coordinator,
)
from workhive.client import Client
from workhive.coordinator.etcd import EtcdError
from workhive.coordinator.etcd.client import EtcdClient
from workhive.coordinator.etcd.credentials import EtcdAuth, EtcdTLS
from workhive.v1 import client_pb2, client_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ROOT_PW = "root-pw-0f9e8d7c6b5a"
WORKHIVE_PW = "workhive-pw-1a2b3c4d5e6f"


@pytest.fixture
def tls_etcd(pki: PKI) -> Iterator[EtcdProc]:
    e = EtcdProc(tls=(pki.ca.path, *pki.server))
    try:
        yield e
    finally:
        e.stop()


def test_coordinator_over_etcd_tls_with_client_certificates(pki: PKI, tls_etcd: EtcdProc) -> None:
    # without a client certificate etcd refuses the handshake
    bare = EtcdClient([tls_etcd.url], tls=EtcdTLS(ca=pki.ca.path.read_bytes()), retry_time=0.5)
    with pytest.raises(EtcdError):
        bare.status()
    bare.close()
    s = base_settings(
        tls_etcd.url,
        etcd_cacert=str(pki.ca.path),
        etcd_cert=str(pki.agent[0]),
        etcd_key=str(pki.agent[1]),
    )
    with coordinator(s) as node:
        with Client([node.address]) as c:
            assert c.status().leader.leader_id == node.node.id
        with EtcdClient(
            [tls_etcd.url],
            tls=EtcdTLS(pki.ca.path.read_bytes(), *(p.read_bytes() for p in pki.agent)),
        ) as etcd:
            assert etcd.get_prefix(s.prefix.encode() + b"election/")[1]


@pytest.fixture
def auth_etcd() -> Iterator[tuple[EtcdProc, str]]:
    """etcd with auth enabled and user ``workhive`` limited to one prefix."""
    e = EtcdProc()
    prefix = f"/wh-auth-{os.getpid()}/"
    try:
        e.ctl("user", "add", f"root:{ROOT_PW}")
        e.ctl("role", "add", "workhive")
        e.ctl("role", "grant-permission", "workhive", "--prefix=true", "readwrite", prefix)
        e.ctl("user", "add", f"workhive:{WORKHIVE_PW}")
        e.ctl("user", "grant-role", "workhive", "workhive")
        e.ctl("auth", "enable")
        yield e, prefix
    finally:
        e.stop()


def test_etcd_auth_limits_the_user_to_the_prefix(auth_etcd: tuple[EtcdProc, str]) -> None:
    e, prefix = auth_etcd
    with EtcdClient([e.url], auth=EtcdAuth("workhive", WORKHIVE_PW), retry_time=1) as c:
        c.put(prefix.encode() + b"x", b"1")
        with pytest.raises(EtcdError, match=r"PERMISSION_DENIED|permission denied"):
            c.put(b"/elsewhere", b"1")
        # an expired / unknown token is renewed transparently
        c._token = "workhive.bogus.1"
        assert c.get(prefix.encode() + b"x") is not None
    with EtcdClient([e.url], auth=EtcdAuth("workhive", "wrong-password"), retry_time=1) as c:
        with pytest.raises(EtcdError) as info:
            c.status()
        assert "wrong-password" not in str(info.value)
    with EtcdClient([e.url], retry_time=1) as c, pytest.raises(EtcdError):  # no credentials
        c.put(prefix.encode() + b"y", b"1")


def test_coordinator_with_etcd_auth_elects_itself_and_never_logs_secrets(
    auth_etcd: tuple[EtcdProc, str], tokens_file: Path, tmp_path: Path
) -> None:
    e, prefix = auth_etcd
    pw = tmp_path / "etcd-password"
    pw.write_text(WORKHIVE_PW + "\n")
    port, health = free_port(), free_port()
    env = {
        **os.environ,
        "WORKHIVE_ETCD_USER": "workhive",
        "WORKHIVE_ETCD_PASSWORD_FILE": str(pw),
        "WORKHIVE_AUTH_TOKENS_FILE": str(tokens_file),
        "WORKHIVE_LOG_LEVEL": "debug",
        "WORKHIVE_HEALTH_LISTEN": f"{HOST}:{health}",
    }
    log = tmp_path / "coordinator.log"
    argv = [
        sys.executable,
        "-m",
        "workhive.coordinator.cli",
        "coordinator",
        "--etcd",
        e.url,
        "--listen",
        f"{HOST}:{port}",
        "--prefix",
        prefix,
        "--election-ttl",
        "2",
        "--log-format",
        "json",
        "--id",
        "auth-coordinator",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        client = Client([f"{HOST}:{port}"], token=TOKENS["*client*"], timeout=20)
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if client.status().leader.leader_id == "auth-coordinator":
                    break
            except Exception:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        client.close()
        # refused calls get logged (without the token they carried)
        with grpc.insecure_channel(f"{HOST}:{port}") as ch:
            stub = client_pb2_grpc.ClientServiceStub(ch)
            with pytest.raises(grpc.RpcError):
                stub.GetStatus(
                    client_pb2.GetStatusRequest(),
                    metadata=(("authorization", "Bearer leaked-looking-token-999"),),
                    timeout=5,
                )
            with pytest.raises(grpc.RpcError):
                stub.GetStatus(client_pb2.GetStatusRequest(), metadata=bearer("agent-a"), timeout=5)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
    text = log.read_text()
    assert code == 0, text
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(ev.get("event") == "leading" for ev in events), text
    assert any(ev.get("event") == "call refused" for ev in events), text
    for secret in (WORKHIVE_PW, ROOT_PW, "leaked-looking-token-999", *TOKENS.values()):
        assert secret not in text


def test_settings_errors_name_the_setting_and_hide_secrets(tmp_path: Path) -> None:
    from workhive.coordinator.settings import SettingsError, load_settings

    cases = {
        "etcd_user": {"etcd_password": "sekrit-value-123"},
        "tls_key": {"tls_cert": str(tmp_path)},
        "health_listen": {"health_listen": "nope"},
        "etcd": {"etcd_cacert": __file__},
        "etcd_cert": {"etcd_key": __file__, "etcd": "https://127.0.0.1:1"},
        "auth_tokens_file": {"auth_tokens_file": str(tmp_path / "missing")},
    }
    for name, flags in cases.items():
        with pytest.raises(SettingsError) as info:
            load_settings(flags, env={})
        assert repr(name) in str(info.value), (name, str(info.value))
        assert "sekrit-value-123" not in str(info.value)
    s = load_settings({"etcd_user": "u", "etcd_password": "sekrit-value-123"}, env={})
    assert "sekrit-value-123" not in repr(s)
