"""The process fixture is real: a key is written, a lease expires, its key vanishes."""

from __future__ import annotations

import time

import pytest

from tests.harness.etcd_fixtures import EtcdTarget
from workhive.coordinator.etcd import EtcdClient, InvalidArgument, LeaseKeeper, Session

pytestmark = pytest.mark.integration


def test_write_key_and_lease_expiry(etcd: EtcdTarget, client: EtcdClient) -> None:
    key = (etcd.prefix + "hello").encode()
    client.put(key, b"world")
    kv = client.get(key)
    assert kv is not None and kv.value == b"world"

    lease, ttl = client.lease_grant(2)
    assert ttl == 2
    lkey = (etcd.prefix + "leased").encode()
    client.put(lkey, b"x", lease=lease)
    t0 = time.monotonic()
    while client.get(lkey) is not None:
        assert time.monotonic() - t0 < 5, "leased key did not vanish"
        time.sleep(0.05)
    took = time.monotonic() - t0
    print(f"lease of 2 s expired after {took:.2f} s")
    assert 1.5 < took < 4.0
    assert client.lease_ttl(lease) <= 0


def test_ttl_below_two_seconds_rejected(client: EtcdClient) -> None:
    with pytest.raises(InvalidArgument):
        client.lease_grant(1)
    with pytest.raises(InvalidArgument):
        Session(client, ttl=1)


def test_keeper_refresh_reports_gone_lease(client: EtcdClient, keeper: LeaseKeeper) -> None:
    lease = keeper.grant(5)
    assert keeper.refresh(lease) >= 4
    assert keeper.revoke(lease)
    assert keeper.refresh(lease) == 0
    many = [keeper.grant(5) for _ in range(20)]
    got = keeper.refresh_many(many)
    assert all(v >= 4 for v in got.values()) and len(got) == 20
    for lid in many:
        keeper.revoke(lid)


def test_session_keeps_lease_alive_and_detects_loss(client: EtcdClient) -> None:
    states = []
    s = Session(client, ttl=2, on_state=states.append)
    try:
        time.sleep(3.0)  # longer than the TTL: keepalive must have run
        assert s.alive and client.lease_ttl(s.lease_id) > 0
        client.lease_revoke(s.lease_id)
        assert s.lost.wait(3.0), "revoked lease not detected"
        assert not s.alive
    finally:
        s.close()
    assert states[-1].value == "lost"


def test_session_close_revokes(etcd: EtcdTarget, client: EtcdClient) -> None:
    s = Session(client, ttl=10)
    key = (etcd.prefix + "sess").encode()
    client.put(key, b"x", lease=s.lease_id)
    s.close()
    s.close()  # idempotent
    assert client.get(key) is None
