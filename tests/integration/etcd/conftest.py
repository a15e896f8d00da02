"""Fixtures for the etcd layer's integration tests (real etcd processes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.etcd_fixtures import (  # noqa: F401  (re-exported fixtures)
    EtcdTarget,
    etcd,
    etcd_cluster,
    etcd_private,
    etcd_server,
)
from workhive.coordinator.etcd import EtcdClient, Keyspace, LeaseKeeper


@pytest.fixture
def client(etcd: EtcdTarget) -> Iterator[EtcdClient]:
    c = EtcdClient(etcd.endpoints, timeout=5.0)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def ks(etcd: EtcdTarget) -> Keyspace:
    return Keyspace(etcd.prefix)


@pytest.fixture
def keeper(client: EtcdClient) -> Iterator[LeaseKeeper]:
    k = LeaseKeeper(client)
    try:
        yield k
    finally:
        k.close()
