"""The coordinator's own event-loop stall does not expire the leases of
agents that keep heartbeating (a real coordinator in-process, real etcd, a
real SDK agent over gRPC): the stall cover renews them from a thread."""

from __future__ import annotations

import threading
import time

import pytest

from tests.security.conftest import base_settings, coordinator
from workhive.agent import Agent, ConnectionState, Task

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(90)]
TTL = 3


def _wait(pred: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_stalled_leader_loop_keeps_heartbeating_agents_leases(etcd_url: str) -> None:
    with coordinator(base_settings(etcd_url, agent_lease_ttl=TTL)) as node:
        agent = Agent([node.address], agent_id="patient", unreachable_timeout=60)

        def handle(task: Task) -> str:
            return ""

        runner = threading.Thread(target=agent.run, args=(handle,), daemon=True)
        runner.start()
        try:
            _wait(lambda: agent.state is ConnectionState.CONNECTED)
            lease = agent.lease_id
            time.sleep(2 * TTL / 4 + 0.5)  # the refresher has confirmed the lease
            loop = node.node._loop
            assert loop is not None
            loop.call_soon_threadsafe(time.sleep, 2.5 * TTL)  # the loop stalls
            time.sleep(2.5 * TTL + 0.5)
            _wait(lambda: agent.state is ConnectionState.CONNECTED)
            assert agent.lease_id == lease
            assert agent.counters.lease_losses == 0
        finally:
            agent.stop()
            runner.join(10)
