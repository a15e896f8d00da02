"""etcd in Docker containers through testcontainers (host network, local image).

Containers run with host networking so that members and clients all talk over
127.0.0.1 ports picked free by the test; ``pause``/``unpause``/``kill`` give
real faults. Ryuk is disabled (no registry to pull it from); every container
is removed by the owner's ``stop()``.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field

from tests.harness.docker_env import ETCD_IMAGE
from workhive.coordinator.local_cluster.ports import free_port, wait_for_port

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

from testcontainers.core.container import DockerContainer


@dataclass
class EtcdContainer:
    """One etcd member in a container; ``url`` is its client endpoint."""

    name: str
    client_port: int
    peer_port: int
    cluster: str = ""
    container: DockerContainer | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def command(self) -> str:
        cluster = self.cluster or f"{self.name}={self.peer_url}"
        return (
            f"--name {self.name} --data-dir /tmp/{self.name}.etcd "
            f"--listen-client-urls {self.url} --advertise-client-urls {self.url} "
            f"--listen-peer-urls {self.peer_url} --initial-advertise-peer-urls {self.peer_url} "
            f"--initial-cluster {cluster} --initial-cluster-state new "
            "--heartbeat-interval 50 --election-timeout 500 --logger zap --log-level error"
        )

    def start(self) -> EtcdContainer:
        self.container = (
            DockerContainer(ETCD_IMAGE)
            .with_kwargs(network_mode="host")
            .with_command(self.command())
            .with_name(f"wh-etcd-{self.name}-{uuid.uuid4().hex[:6]}")
        )
        self.container.start()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        wait_for_port(self.client_port, timeout)

    def _docker(self) -> object:
        assert self.container is not None
        return self.container.get_wrapped_container()

    def pause(self) -> None:
        self._docker().pause()  # type: ignore[attr-defined]

    def unpause(self) -> None:
        """Unpause through the API, then through the docker CLI if the API call
        has not returned in 15 s (seen once: a soak stuck 7 min in the API's
        unpause while ``docker unpause`` worked at once)."""
        wrapped = self._docker()
        done = threading.Event()

        def api() -> None:
            wrapped.unpause()  # type: ignore[attr-defined]
            done.set()

        threading.Thread(target=api, name="etcd-unpause", daemon=True).start()
        if not done.wait(15.0):
            name = wrapped.name  # type: ignore[attr-defined]
            subprocess.run(["docker", "unpause", name], timeout=30, check=False)

    def kill(self) -> None:
        self._docker().kill()  # type: ignore[attr-defined]

    def restart(self) -> None:
        self._docker().restart(timeout=1)  # type: ignore[attr-defined]

    def stop(self) -> None:
        if self.container is not None:
            try:
                self.container.stop()
            finally:
                self.container = None


def start_single() -> EtcdContainer:
    member = EtcdContainer(name="m0", client_port=free_port(), peer_port=free_port()).start()
    member.wait_ready()
    return member


def start_cluster(size: int = 3) -> list[EtcdContainer]:
    members = [
        EtcdContainer(name=f"m{i}", client_port=free_port(), peer_port=free_port())
        for i in range(size)
    ]
    cluster = ",".join(f"{m.name}={m.peer_url}" for m in members)
    try:
        for m in members:
            m.cluster = cluster
            m.start()
        for m in members:
            m.wait_ready()
        time.sleep(0.5)  # let the members elect a raft leader
    except BaseException:
        for m in members:
            m.stop()
        raise
    return members
