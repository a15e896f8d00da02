"""pytest fixtures for real etcd processes (see ``etcd_process.py``).

- ``etcd_server`` (session): one single-member etcd for the whole session, or
  the server named by ``WORKHIVE_ETCD_ENDPOINT`` (reuse an existing one).
- ``etcd`` (function): an ``EtcdTarget`` with that server's URL and a unique
  key prefix ``/wh-test-<uuid>/`` so tests never see each other's keys.
- ``etcd_private`` (function): a fresh single-member server of its own, for
  tests that restart, compact or otherwise disturb the server.
- ``etcd_cluster`` (function): a fresh 3-member cluster.

Every process is killed and every temp dir removed, whatever the test does.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.harness.etcd_process import EtcdCluster


@dataclass(frozen=True)
class EtcdTarget:
    """Where a test talks to etcd: endpoint URLs and its own key prefix."""

    endpoints: tuple[str, ...]
    prefix: str
    cluster: EtcdCluster | None = None  # None when reusing an external server

    @property
    def url(self) -> str:
        return self.endpoints[0]


def _prefix() -> str:
    return f"/wh-test-{uuid.uuid4().hex[:12]}/"


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdCluster | str]:
    external = os.environ.get("WORKHIVE_ETCD_ENDPOINT")
    if external:
        yield external
        return
    cluster = EtcdCluster(1)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def etcd(etcd_server: EtcdCluster | str) -> EtcdTarget:
    if isinstance(etcd_server, str):
        return EtcdTarget(endpoints=(etcd_server,), prefix=_prefix())
    return EtcdTarget(endpoints=tuple(etcd_server.endpoints), prefix=_prefix(), cluster=etcd_server)


@pytest.fixture
def etcd_private() -> Iterator[EtcdTarget]:
    cluster = EtcdCluster(1)
    try:
        cluster.start()
        yield EtcdTarget(endpoints=tuple(cluster.endpoints), prefix=_prefix(), cluster=cluster)
    finally:
        cluster.close()


@pytest.fixture
def etcd_cluster() -> Iterator[EtcdTarget]:
    cluster = EtcdCluster(3)
    try:
        cluster.start()
        yield EtcdTarget(endpoints=tuple(cluster.endpoints), prefix=_prefix(), cluster=cluster)
    finally:
        cluster.close()
