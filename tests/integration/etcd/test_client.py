"""Client failover, deadlines, ambiguous-txn read-back, session suspension."""

from __future__ import annotations

import time

import pytest

from tests.harness.etcd_fixtures import EtcdTarget
from tests.harness.etcd_process import free_port
from workhive.coordinator.etcd import (
    EtcdClient,
    EtcdUnavailable,
    Keyspace,
    Outcome,
    Session,
    SessionState,
)
from workhive.coordinator.etcd.txn import TxnItem, _applied, cmp_version, op_put, run_batch

from .helpers import RecordingClient

pytestmark = pytest.mark.integration


def test_dead_first_endpoint_fails_over(etcd: EtcdTarget) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    c = EtcdClient([dead, *etcd.endpoints], timeout=2, retry_time=5)
    try:
        key = (etcd.prefix + "fo").encode()
        c.put(key, b"1")  # first attempt hits the dead endpoint, then moves on
        kv = c.get(key)
        assert kv is not None and kv.value == b"1"
        assert c.endpoint == EtcdClient(etcd.endpoints).endpoint
    finally:
        c.close()


def test_every_call_has_a_deadline(etcd_private: EtcdTarget) -> None:
    assert etcd_private.cluster is not None
    member = etcd_private.cluster.members[0]
    c = EtcdClient(etcd_private.endpoints, timeout=0.5, retry_time=1.0)
    try:
        c.put(b"/d", b"1")
        member.pause()
        t0 = time.monotonic()
        with pytest.raises(EtcdUnavailable):
            c.get(b"/d")
        assert time.monotonic() - t0 < 3
    finally:
        member.resume()
        c.close()


def test_ambiguous_txn_is_resolved_by_read_back(client: EtcdClient, ks: Keyspace) -> None:
    items = [
        TxnItem(
            [cmp_version(ks.root + k, 0)], [op_put(ks.root + k, b"v")], puts=[(ks.root + k, b"v")]
        )
        for k in (b"a", b"b")
    ]
    assert _applied(client, items, 128) == 0  # not applied yet
    res = run_batch(client, items)
    assert all(r.ok for r in res)
    assert _applied(client, items, 128) == res[0].revision  # read back: it applied


def test_session_suspends_then_loses_when_etcd_silent(etcd_private: EtcdTarget) -> None:
    assert etcd_private.cluster is not None
    member = etcd_private.cluster.members[0]
    c = EtcdClient(etcd_private.endpoints, timeout=0.5, retry_time=1.0)
    states: list[SessionState] = []
    s = Session(c, ttl=2, on_state=states.append)
    try:
        member.pause()
        t0 = time.monotonic()
        assert s.lost.wait(5), "session not lost while etcd is silent"
        took = time.monotonic() - t0
        print(f"session (TTL 2 s) declared lost {took:.2f} s after etcd went silent")
        assert SessionState.SUSPENDED in states and states[-1] is SessionState.LOST
        assert took <= 3.0  # TTL + 1 s: before the server-side expiry, give or take
    finally:
        member.resume()
        s.close()
        c.close()


def test_one_conflict_in_a_batch_costs_a_read_and_sinks_nothing(etcd: EtcdTarget) -> None:
    c = RecordingClient(etcd.endpoints)
    ks = Keyspace(etcd.prefix)
    try:
        c.put(ks.root + b"taken", b"x")
        items = [
            TxnItem(
                [cmp_version(ks.root + k, 0)],
                [op_put(ks.root + k, b"v")],
                puts=[(ks.root + k, b"v")],
            )
            for k in (b"free", b"taken", b"other")
        ]
        res = run_batch(c, items)
        assert [r.outcome for r in res] == [Outcome.OK, Outcome.CONFLICT, Outcome.OK]
        # the write that failed, one read, the write retried: no txn carried a
        # failure branch (it used to be built and sent with every txn)
        assert c.failures == [0, 0, 0]
    finally:
        c.close()
