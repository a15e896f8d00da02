"""Fixtures for the etcd layer's integration tests (real etcd processes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import etcd_fixtures as _fixtures
from tests.harness.etcd_fixtures import EtcdTarget
from workhive.coordinator.etcd import Claims, Election, EtcdClient, Keyspace, LeaseKeeper, Session

# Re-exported fixtures (tests/conftest.py may import them too; same objects).
etcd_server = _fixtures.etcd_server
etcd = _fixtures.etcd
etcd_private = _fixtures.etcd_private
etcd_cluster = _fixtures.etcd_cluster


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
def claims(client: EtcdClient, ks: Keyspace) -> Claims:
    return Claims(client, ks)


@pytest.fixture
def keeper(client: EtcdClient) -> Iterator[LeaseKeeper]:
    k = LeaseKeeper(client)
    try:
        yield k
    finally:
        k.close()


@pytest.fixture
def leader(client: EtcdClient, ks: Keyspace) -> Iterator[Election]:
    """This test's leader: a won election (its fence guards leader writes)."""
    s = Session(client, ttl=5)
    e = Election(client, s, ks, candidate_id="leader", address="l:1")
    try:
        e.campaign(timeout=5)
        yield e
    finally:
        s.close()
