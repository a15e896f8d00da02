"""Security test harness: throwaway PKI, in-process coordinators, raw agents,
and private etcd processes with TLS or authentication.

Everything listens on 127.0.0.1 only and is stopped whatever the test does.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.harness.etcd_process import etcd_binary, free_port, port_open
from workhive.coordinator.node import CoordinatorNode
from workhive.coordinator.settings import Settings
from workhive.v1 import agent_pb2, agent_pb2_grpc, common_pb2

HOST = "127.0.0.1"
TOKENS = {
    "agent-a": "token-of-agent-a-0123456789",
    "agent-b": "token-of-agent-b-0123456789",
    "*client*": "token-of-the-client-0123456789",
}
CLIENTS = {  # name: (token, role, project prefix)
    "viewer": ("token-of-a-viewer-0123456789", "read", ""),
    "submitter": ("token-of-a-submitter-0123456789", "submit", ""),
    "ci-bot": ("token-of-the-ci-bot-0123456789", "admin", "ci-"),
}


# -- PKI ----------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class CA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    path: Path

    @classmethod
    def create(cls, d: Path, cn: str) -> CA:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(_name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        path = d / f"{cn}.crt"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(key, cert, path)

    def issue(self, d: Path, cn: str) -> tuple[Path, Path]:
        """A leaf certificate for 127.0.0.1/localhost, usable by servers and clients."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=2))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
                ),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        crt, key_path = d / f"{cn}.crt", d / f"{cn}.key"
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_key_pem(key))
        key_path.chmod(0o600)
        return crt, key_path


@dataclass(frozen=True)
class PKI:
    ca: CA
    server: tuple[Path, Path]
    agent: tuple[Path, Path]  # signed by ca
    rogue_ca: CA
    rogue: tuple[Path, Path]  # signed by rogue_ca

    def creds(
        self, *, ca: Path | None = None, client: tuple[Path, Path] | None = None
    ) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=(ca or self.ca.path).read_bytes(),
            private_key=client[1].read_bytes() if client else None,
            certificate_chain=client[0].read_bytes() if client else None,
        )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    ca = CA.create(d, "workhive-test-ca")
    rogue = CA.create(d, "rogue-ca")
    return PKI(
        ca=ca,
        server=ca.issue(d, "coordinator"),
        agent=ca.issue(d, "agent-a"),
        rogue_ca=rogue,
        rogue=rogue.issue(d, "mallory"),
    )


@pytest.fixture(scope="session")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("auth") / "tokens.yaml"
    lines = [f'"{who}": {tok}\n' for who, tok in TOKENS.items()]
    lines.append("clients:\n")
    lines += [
        f"  {name}: {{token: {tok}, role: {role}, projects: '{prefix}'}}\n"
        for name, (tok, role, prefix) in CLIENTS.items()
    ]
    p.write_text("".join(lines))
    return p


def bearer(who: str) -> tuple[tuple[str, str], ...]:
    token = CLIENTS[who][0] if who in CLIENTS else TOKENS[who]
    return (("authorization", f"Bearer {token}"),)


# -- coordinators -------------------------------------------------------------------------


class NodeThread:
    """A ``CoordinatorNode`` on its own event loop in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.node = CoordinatorNode(settings)
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="coordinator", daemon=True)

    def _main(self) -> None:
        async def run() -> None:
            ready = asyncio.Event()
            task = asyncio.create_task(self.node.run(ready))
            waiter = asyncio.create_task(ready.wait())
            await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
            self._ready.set()
            await task

        try:
            asyncio.run(run())
        except BaseException as exc:  # surfaced by start()/stop()
            self.error = exc
        finally:
            self._ready.set()

    def start(self, timeout: float = 20.0) -> NodeThread:
        self._thread.start()
        assert self._ready.wait(timeout), "coordinator did not start"
        if self.error is not None:
            raise self.error
        return self

    @property
    def address(self) -> str:
        return f"{HOST}:{self.node.port}"

    def wait_leader(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.node.driver is None:
            assert self.error is None, self.error
            assert time.monotonic() < deadline, "the coordinator never led"
            time.sleep(0.05)
        time.sleep(0.2)  # the driver's first rebuild

    def stop(self) -> None:
        self.node.stop()
        self._thread.join(20)
        assert not self._thread.is_alive(), "coordinator did not stop"


@contextlib.contextmanager
def coordinator(settings: Settings, *, lead: bool = True) -> Iterator[NodeThread]:
    t = NodeThread(settings).start()
    try:
        if lead:
            t.wait_leader()
        yield t
    finally:
        t.stop()


def base_settings(etcd_url: str, **kw: Any) -> Settings:
    s = Settings(
        etcd=(etcd_url,),
        prefix=f"/wh-sec-{uuid.uuid4().hex[:10]}/",
        listen=f"{HOST}:0",
        coordinator_id=f"sec-{uuid.uuid4().hex[:6]}",
        election_ttl=2,
        agent_lease_ttl=3,
        heartbeat_interval_ms=500,
        agent_grace=0.5,
        fast_failover=False,
        shutdown_grace=0.5,
        log_format="json",
    )
    return replace(s, **kw)


@pytest.fixture
def etcd_url(etcd_server: Any) -> str:
    return etcd_server if isinstance(etcd_server, str) else str(etcd_server.endpoints[0])


# -- a raw agent session -------------------------------------------------------------------


class RawAgent:
    """A hand-driven ``AgentService.Session``: send messages, read replies."""

    def __init__(
        self,
        channel: grpc.Channel,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._out: queue.Queue[agent_pb2.AgentMessage | None] = queue.Queue()
        self.replies: queue.Queue[agent_pb2.CoordinatorMessage | grpc.RpcError | None] = (
            queue.Queue()
        )
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        self.call = stub.Session(iter(self._out.get, None), metadata=metadata)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for msg in self.call:
                self.replies.put(msg)
            self.replies.put(None)
        except grpc.RpcError as err:
            self.replies.put(err)

    def send(self, **kind: Any) -> None:
        self._out.put(agent_pb2.AgentMessage(**kind))

    def hello(self, agent_id: str, **kw: Any) -> None:
        self.send(hello=agent_pb2.Hello(agent_id=agent_id, slots=1, prefetch=1, **kw))

    def next(self, kind: str | None = None, timeout: float = 10.0) -> agent_pb2.CoordinatorMessage:
        """The next reply (of ``kind``; others are skipped); raises the call's error."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind or 'reply'} in {timeout}s")
            try:
                msg = self.replies.get(timeout=left)
            except queue.Empty:
                continue
            if isinstance(msg, grpc.RpcError):
                raise msg
            if msg is None:
                raise EOFError("session ended")
            if kind is None or msg.WhichOneof("kind") == kind:
                return msg

    def runnable(self, msg: agent_pb2.CoordinatorMessage) -> common_pb2.TaskRef | None:
        """Act on ``msg`` as a well-behaved agent: ask to start an assignment
        that was not created started; the task to run now (an assignment
        created started, or a start granted), else ``None``."""
        kind = msg.WhichOneof("kind")
        if kind == "assign" and not msg.assign.started:
            self.send(start=agent_pb2.StartRequest(task=msg.assign.task))
            return None
        if kind == "assign":
            return msg.assign.task
        return msg.start_granted.task if kind == "start_granted" else None

    def error(self, timeout: float = 10.0) -> grpc.RpcError:
        """The error the session ends with."""
        while True:
            msg = self.replies.get(timeout=timeout)
            if isinstance(msg, grpc.RpcError):
                return msg
            if msg is None:
                raise AssertionError("the session ended without an error")

    def close(self) -> None:
        self._out.put(None)
        self.call.cancel()


# -- private etcd processes ----------------------------------------------------------------


def etcdctl_binary() -> str:
    return str(Path(etcd_binary()).parent / "etcdctl")


class EtcdProc:
    """One etcd member on 127.0.0.1 with whatever client URL scheme and flags."""

    def __init__(self, *, tls: tuple[Path, Path, Path] | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="wh-sec-etcd-"))
        self.port, peer = free_port(), free_port()
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://{HOST}:{self.port}"
        args = [
            etcd_binary(),
            "--name=sec",
            f"--data-dir={self.dir / 'data'}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls=http://{HOST}:{peer}",
            f"--initial-advertise-peer-urls=http://{HOST}:{peer}",
            f"--initial-cluster=sec=http://{HOST}:{peer}",
            "--heartbeat-interval=50",
            "--election-timeout=500",
            "--log-level=error",
        ]
        if tls:
            ca, cert, key = tls
            args += [
                f"--cert-file={cert}",
                f"--key-file={key}",
                f"--trusted-ca-file={ca}",
                "--client-cert-auth",
            ]
        self.tls = tls
        self.log = self.dir / "etcd.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while not port_open(self.port):
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "etcd did not open its port"
            time.sleep(0.05)

    def ctl(self, *args: str, user: str = "") -> str:
        cmd = [etcdctl_binary(), f"--endpoints={self.url}", "--command-timeout=5s"]
        if self.tls:
            ca, cert, key = self.tls
            cmd += [f"--cacert={ca}", f"--cert={cert}", f"--key={key}"]
        if user:
            cmd.append(f"--user={user}")
        out = subprocess.run(
            [*cmd, *args], capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL
        )
        assert out.returncode == 0, f"etcdctl {args}: {out.stderr}"
        return out.stdout

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)
