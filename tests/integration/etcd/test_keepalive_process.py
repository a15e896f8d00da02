"""KeepaliveProcess: agent leases renewed from a child process (real etcd,
a real child process), out of reach of the coordinator's GIL."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable

import pytest

from tests.harness.etcd_fixtures import EtcdTarget
from workhive.coordinator.etcd import EtcdClient, LeaseKeeper
from workhive.coordinator.etcd.keepalive_process import KeepaliveProcess, _running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
TTL = 3


def _connect(etcd: EtcdTarget) -> Callable[[], EtcdClient]:
    return functools.partial(EtcdClient, list(etcd.endpoints), timeout=5.0)


def _with_process(
    etcd: EtcdTarget, body: Callable[[KeepaliveProcess, LeaseKeeper], Awaitable[None]]
) -> None:
    """Run ``body`` on an event loop beating a started KeepaliveProcess."""

    async def main() -> None:
        client = EtcdClient(list(etcd.endpoints), timeout=5.0)
        keeper = LeaseKeeper(client)
        kp = KeepaliveProcess(LeaseKeeper(client), TTL, connect=_connect(etcd))
        kp.start(asyncio.get_running_loop())

        beating = asyncio.create_task(kp.beating())
        try:
            await body(kp, keeper)
        finally:
            beating.cancel()
            kp.stop()
            keeper.close()
            client.close()

    asyncio.run(main())


async def _heartbeat(kp: KeepaliveProcess, leases: list[int], seconds: float) -> None:
    """Agents' heartbeats as the coordinator answers them: from memory, or
    renewed here when memory has no fresh answer."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for lease in leases:
            if not kp.heard(lease):
                await asyncio.to_thread(kp.refresh, lease)
        await asyncio.sleep(0.5)


def test_heartbeats_are_answered_from_memory_while_the_child_renews_the_lease(
    etcd: EtcdTarget,
) -> None:
    async def body(kp: KeepaliveProcess, keeper: LeaseKeeper) -> None:
        lease = keeper.grant(TTL)
        await _heartbeat(kp, [lease], 3 * TTL)
        assert keeper.refresh(lease) > 0
        age = kp.last_keepalive(lease)
        assert age is not None and age < TTL / 2  # the child's answers reached memory
        assert kp.restarts == 0

    _with_process(etcd, body)


def test_leases_outlive_a_coordinator_whose_gil_is_held_by_busy_threads(
    etcd: EtcdTarget,
) -> None:
    """The convoy of issue 17: pure-Python threads hold the GIL (and starve
    the loop) for three TTLs; the child renews every lease meanwhile."""

    def spin(stop: threading.Event) -> None:
        x = 0
        while not stop.is_set():
            for i in range(1000):
                x += i

    async def body(kp: KeepaliveProcess, keeper: LeaseKeeper) -> None:
        leases = [keeper.grant(TTL) for _ in range(300)]
        await _heartbeat(kp, leases, TTL)
        stop = threading.Event()
        spinners = [threading.Thread(target=spin, args=(stop,)) for _ in range(4)]
        for t in spinners:
            t.start()
        try:
            await _heartbeat(kp, leases, 3 * TTL)
        finally:
            stop.set()
            for t in spinners:
                t.join()
        ttls = keeper.refresh_many(leases)
        assert sorted(set(ttls.values()))[0] > 0, "a lease expired while the GIL was busy"

    _with_process(etcd, body)


def test_an_unheard_lease_is_not_renewed(etcd: EtcdTarget) -> None:
    async def body(kp: KeepaliveProcess, keeper: LeaseKeeper) -> None:
        kept, dropped = keeper.grant(TTL), keeper.grant(TTL)
        await _heartbeat(kp, [kept, dropped], 1.0)
        await _heartbeat(kp, [kept], TTL + 1.5)  # ``dropped``'s agent went silent
        assert keeper.refresh(kept) > 0
        assert keeper.refresh(dropped) == 0

    _with_process(etcd, body)


def test_a_killed_keepalive_process_is_started_again(etcd: EtcdTarget) -> None:
    async def body(kp: KeepaliveProcess, keeper: LeaseKeeper) -> None:
        lease = keeper.grant(TTL)
        await _heartbeat(kp, [lease], 1.0)
        child = kp._child
        assert child is not None
        os.kill(child.pid, signal.SIGKILL)
        await _heartbeat(kp, [lease], 2 * TTL)
        assert kp.restarts == 1
        assert kp._child is not None and kp._child.pid != child.pid
        assert keeper.refresh(lease) > 0

    _with_process(etcd, body)


def test_the_child_ends_with_the_coordinator(etcd: EtcdTarget) -> None:
    async def body(kp: KeepaliveProcess, keeper: LeaseKeeper) -> None:
        await asyncio.sleep(1.0)
        child = kp._child
        assert child is not None
        t0 = time.monotonic()
        kp.stop()
        assert child.poll() is not None  # stop() waited for it
        assert time.monotonic() - t0 < 3.0

    _with_process(etcd, body)


def test_a_stopped_coordinator_is_not_running_for_the_stall_cover() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert _running(proc.pid)
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(0.2)
        assert not _running(proc.pid)
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.2)
        assert _running(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert not _running(proc.pid)
