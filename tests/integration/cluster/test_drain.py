"""``workhive drain AGENT`` / ``Client.drain_agent``: a connected agent asked to
drain hands its queue back, finishes what runs, reports and exits 0 (real
etcd, coordinator and agent processes on 127.0.0.1)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.harness.dags import independent
from tests.integration.cluster.conftest import Harness
from workhive.client import WorkhiveError

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

Make = Callable[..., Harness]


def test_a_drained_agent_finishes_its_work_and_exits(make_cluster: Make) -> None:
    h = make_cluster().start(coordinators=1)
    agent = h.add_agent(agent_id="to-drain")
    spec = independent(4, sleep=1.0, project="drained")
    h.client.submit(spec)
    deadline = time.monotonic() + 20
    while not any(a.agent_id == "to-drain" and a.running for a in h.status().agents):
        assert time.monotonic() < deadline, "the agent never ran a task"
        time.sleep(0.1)
    h.client.drain_agent("to-drain", "test")
    assert agent.popen.wait(timeout=30) == 0  # type: ignore[attr-defined]
    h.add_agent(agent_id="after")
    done = h.wait_finished(spec.id, timeout=60)
    assert done.counts["succeeded"] == 4
    report = h.audit()
    assert report.ok, report.violations
    assert report.executions == 4  # the drained agent's work was not run again


def test_draining_an_agent_that_is_not_connected_is_not_found(make_cluster: Make) -> None:
    h = make_cluster().start(coordinators=1)
    with pytest.raises(WorkhiveError) as info:
        h.client.drain_agent("nobody")
    assert info.value.code == "NOT_FOUND" and "no agent 'nobody'" in str(info.value)
