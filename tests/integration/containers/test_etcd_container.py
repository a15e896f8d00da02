"""The container etcd fixture is a real etcd: keys, leases, expiry."""

from __future__ import annotations

import time

import etcd3
import pytest

from tests.harness.etcd_container import EtcdContainer

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def _client(url: str) -> etcd3.Etcd3Client:
    host, port = url.removeprefix("http://").split(":")
    return etcd3.client(host=host, port=int(port), timeout=5)


def test_container_etcd_stores_a_key(etcd_container: EtcdContainer) -> None:
    c = _client(etcd_container.url)
    c.put("/wh-test/k", "v")
    assert c.get("/wh-test/k")[0] == b"v"


def test_container_etcd_lease_expiry_deletes_the_key(etcd_container: EtcdContainer) -> None:
    c = _client(etcd_container.url)
    lease = c.lease(2)
    c.put("/wh-test/leased", "v", lease=lease)
    assert c.get("/wh-test/leased")[0] == b"v"
    deadline = time.monotonic() + 6
    while c.get("/wh-test/leased")[0] is not None:
        assert time.monotonic() < deadline, "leased key outlived its 2 s lease by far"
        time.sleep(0.1)


def test_container_cluster_has_three_voting_members(
    etcd_container_cluster: list[EtcdContainer],
) -> None:
    c = _client(etcd_container_cluster[0].url)
    assert len(list(c.members)) == 3
    c.put("/wh-test/replicated", "x")
    assert _client(etcd_container_cluster[2].url).get("/wh-test/replicated")[0] == b"x"
