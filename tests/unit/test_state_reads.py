"""Which state a replica answers from (``coordinator/state_reads.py``): the
leader's mirror, a new leader's mirror once rebuilt, a follower's warm mirror,
and an etcd snapshot only when there is none of these. Pure unit tests: the
leader, the warm mirror and the etcd client are stand-ins (the integration
test ``tests/integration/leader/test_status_after_takeover.py`` runs real
replicas)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, cast

import pytest

from workhive.coordinator import state_reads
from workhive.coordinator.etcd import ClusterState, EtcdClient, Keyspace, StandbyMirror
from workhive.coordinator.leader.driver import LeaderDriver
from workhive.coordinator.state_reads import StateReads

KS = Keyspace("/t/")


def on_a_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (fixtures pass through)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


class FakeLeader:
    def __init__(self, mirror: ClusterState | None) -> None:
        self.mirror = mirror
        self.ready = asyncio.Event()

    def cluster(self) -> ClusterState | None:
        return self.mirror

    def rebuilt(self, mirror: ClusterState) -> None:
        self.mirror = mirror
        self.ready.set()


class FakeStandby:
    def __init__(self, state: ClusterState | None) -> None:
        self.state = state
        self.read_on: list[str] = []

    def read(self, fn: Callable[[ClusterState], Any]) -> Any:
        self.read_on.append(threading.current_thread().name)
        return fn(self.state) if self.state is not None else None


class PingClient:
    def __init__(self) -> None:
        self.pings = 0

    def ping(self, timeout: float) -> None:
        self.pings += 1


def _state(revision: int) -> ClusterState:
    return ClusterState.from_kvs(KS, revision, [])


@contextlib.contextmanager
def _reads(
    leader: FakeLeader | None = None,
    standby: FakeStandby | None = None,
    client: PingClient | None = None,
    rebuild_wait: float = 5.0,
) -> Iterator[StateReads]:
    reads = StateReads(
        KS,
        lambda: cast(LeaderDriver | None, leader),
        lambda: cast(StandbyMirror | None, standby),
        lambda: cast(EtcdClient, client or PingClient()),
        rebuild_wait=rebuild_wait,
    )
    try:
        yield reads
    finally:
        reads.close()


@pytest.fixture
def snapshots(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every etcd snapshot taken; each answers an empty keyspace at revision 99."""
    taken: list[int] = []

    def snapshot(client: object, root: bytes) -> tuple[int, list[object]]:
        taken.append(99)
        return 99, []

    monkeypatch.setattr(state_reads, "snapshot", snapshot)
    return taken


def _seen(cs: ClusterState, leader: LeaderDriver | None) -> tuple[int, bool]:
    return cs.revision, leader is not None


@on_a_loop
async def test_a_leader_answers_from_its_mirror_and_passes_itself(snapshots: list[int]) -> None:
    with _reads(leader=FakeLeader(_state(7)), standby=FakeStandby(_state(5))) as reads:
        assert await reads.read(_seen) == (7, True)
        assert snapshots == []


@on_a_loop
async def test_a_new_leader_answers_once_its_mirror_is_rebuilt_not_from_etcd(
    snapshots: list[int],
) -> None:
    leader = FakeLeader(None)
    with _reads(leader=leader) as reads:
        asking = asyncio.create_task(reads.read(_seen))
        await asyncio.sleep(0.05)
        assert not asking.done()  # waits for the rebuild
        leader.rebuilt(_state(8))
        assert await asking == (8, True)
        assert snapshots == []


@on_a_loop
async def test_a_new_leader_that_rebuilds_too_slowly_answers_from_etcd(
    snapshots: list[int],
) -> None:
    with _reads(leader=FakeLeader(None), rebuild_wait=0.05) as reads:
        assert await reads.read(_seen) == (99, False)
        assert snapshots == [99]


@on_a_loop
async def test_a_follower_answers_from_its_warm_mirror_off_the_loop_without_a_leader(
    snapshots: list[int],
) -> None:
    standby = FakeStandby(_state(5))
    with _reads(standby=standby) as reads:
        assert await reads.read(_seen) == (5, False)
        assert snapshots == []
        assert standby.read_on and standby.read_on[0].startswith("state-reads")


@on_a_loop
async def test_a_warm_mirror_without_its_snapshot_yet_falls_back_to_etcd(
    snapshots: list[int],
) -> None:
    with _reads(standby=FakeStandby(None)) as reads:
        assert await reads.read(_seen) == (99, False)
        assert snapshots == [99]


@on_a_loop
async def test_the_etcd_ping_does_not_queue_behind_a_full_default_executor() -> None:
    client = PingClient()
    release = threading.Event()
    loop = asyncio.get_running_loop()
    # what a fleet of agents registering at once does to the default executor
    busy = [loop.run_in_executor(None, release.wait) for _ in range(64)]
    try:
        with _reads(client=client) as reads:
            started = time.monotonic()
            assert await asyncio.wait_for(reads.etcd_problem("etcd"), 2.0) == ""
            assert time.monotonic() - started < 1.0
            assert client.pings == 1
    finally:
        release.set()
        await asyncio.gather(*busy)
