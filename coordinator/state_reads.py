"""Where a replica reads its view of the cluster from, cheapest consistent source first.

Clients may ask any replica for status (docs/client.md). What it answers from:

1. leading, mirror rebuilt: the leader's mirror, on the event loop (only the
   loop changes it);
2. leading, mirror not rebuilt yet (a takeover): wait for the rebuild, up to
   ``rebuild_wait`` seconds. A snapshot of a large keyspace takes longer than
   the rebuild (10 s for 100,000 tasks while 1,000 agents reconnect, against
   about 1 s) and slows it;
3. following with a warm mirror (``StandbyMirror``): that mirror, under its
   lock, on this object's thread;
4. otherwise a snapshot read from etcd, on this object's thread.

``fn(state, leader)`` gets the leader's view only in case 1 (else ``None``),
so what it reads of the leader matches the state it was given. It must only
read and copy: in cases 3 and 4 it runs on a thread, in case 3 under the
warm mirror's lock (the follower's watch waits for it).

Every blocking read, the etcd ping of ``etcd_problem`` included, runs on a
small pool of this object's own, not the event loop's default executor: during
a takeover a fleet of agents registering through that executor queued a
1 ms ping for 3.8 s.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from workhive.coordinator.etcd import (
    ClusterState,
    EtcdClient,
    EtcdError,
    EtcdUnavailable,
    Keyspace,
    StandbyMirror,
    snapshot,
)
from workhive.coordinator.leader.driver import LeaderDriver

T = TypeVar("T")
REBUILD_WAIT = 5.0  # seconds a read waits for a new leader's mirror before reading etcd

ReadFn = Callable[[ClusterState, LeaderDriver | None], T]


class StateReads:
    """The reads above, for one replica (``leader``/``standby``/``client`` are
    looked up at each read: they change as the replica leads and follows)."""

    def __init__(
        self,
        keyspace: Keyspace,
        leader: Callable[[], LeaderDriver | None],
        standby: Callable[[], StandbyMirror | None],
        client: Callable[[], EtcdClient],
        rebuild_wait: float = REBUILD_WAIT,
    ) -> None:
        self.ks = keyspace
        self._leader = leader
        self._standby = standby
        self._client = client
        self.rebuild_wait = rebuild_wait
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="state-reads")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _off_loop(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def read(self, fn: ReadFn[T]) -> T:
        """``fn`` over the first source that has a state (module docstring).
        Raises ``EtcdError`` when only etcd could answer and it did not."""
        driver = self._leader()
        if driver is not None and driver.cluster() is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(driver.ready.wait(), self.rebuild_wait)
            driver = self._leader()
        mirror = driver.cluster() if driver is not None else None
        if driver is not None and mirror is not None:
            return fn(mirror, driver)
        standby = self._standby()
        if standby is not None:
            held = await self._off_loop(lambda: standby.read(lambda cs: (fn(cs, None),)))
            if held is not None:  # None: no snapshot yet, or handed over
                return held[0]
        client, ks = self._client(), self.ks

        def from_etcd() -> T:
            rev, kvs = snapshot(client, ks.root)
            return fn(ClusterState.from_kvs(ks, rev, kvs), None)

        return await self._off_loop(from_etcd)

    async def etcd_problem(self, targets: str) -> str:
        """'' when etcd answered a ping just now, else why the view may be stale."""
        client = self._client()
        try:
            await self._off_loop(lambda: client.ping(1.0))
        except EtcdError as exc:
            why = "is unreachable" if isinstance(exc, EtcdUnavailable) else f"failed ({exc})"
            return f"etcd at {targets} {why}: showing the last state seen"
        return ""
