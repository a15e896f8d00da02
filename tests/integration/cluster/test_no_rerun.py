"""Nothing runs twice when only a coordinator or an agent's lease had trouble:
real etcd, coordinator and agent processes on 127.0.0.1; each test audits
etcd's history and the agents' execution logs (``executed_twice``)."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Callable

import pytest

from tests.harness.dags import chain, failing_first_attempt, independent
from tests.integration.cluster.conftest import Harness

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.failover]

Make = Callable[..., Harness]
AGENT_TTL = 6  # the coordinators' default agent lease TTL (seconds)


def _starts(h: Harness) -> Counter[str]:
    lines = h.cluster.exec_log.read_text().splitlines()
    return Counter(rec["task"] for rec in map(json.loads, lines) if rec["event"] == "start")


def _wait_running(h: Harness, pid: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proj = next((p for p in h.status(pid).projects if p.project_id == pid), None)
        if proj is not None and proj.counts.get("running", 0) > 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"no task of {pid} running within {timeout}s")


@pytest.mark.timeout(120)
def test_an_agent_paused_past_its_lease_finishes_its_task_once(make_cluster: Make) -> None:
    h = make_cluster().start(coordinators=1)
    agent = h.add_agent(agent_id="agent-b")
    spec = independent(1, sleep=4.0, project="paused-agent")
    h.client.submit(spec)
    _wait_running(h, spec.id)
    agent.signal(signal.SIGSTOP)  # type: ignore[attr-defined]
    time.sleep(AGENT_TTL + 3)  # the lease expires; etcd deletes the claim
    agent.signal(signal.SIGCONT)  # type: ignore[attr-defined]
    done = h.wait_finished(spec.id, timeout=60)
    assert done.counts["succeeded"] == 1
    assert _starts(h) == {"t0000": 1}
    report = h.audit()
    assert report.ok, report.violations


@pytest.mark.timeout(150)
def test_results_awaiting_their_ack_are_not_run_again_after_the_leader_pauses(
    make_cluster: Make,
) -> None:
    h = make_cluster().start(coordinators=3, agents=3)
    spec = independent(24, sleep=1.5, project="paused-leader")
    h.client.submit(spec)
    _wait_running(h, spec.id)
    time.sleep(1.0)
    leader = h.leader_proc()
    leader.signal(signal.SIGSTOP)  # type: ignore[attr-defined]
    time.sleep(8.0)  # past the election TTL: another replica leads
    leader.signal(signal.SIGCONT)  # type: ignore[attr-defined]
    done = h.wait_finished(spec.id, timeout=90)
    assert done.counts["succeeded"] == 24
    report = h.audit()
    assert report.ok, report.violations
    if report.leases_ended == 0:  # a loaded machine may let an agent lease lapse
        assert report.executions == 24, _starts(h)


@pytest.mark.timeout(120)
def test_a_second_process_with_a_connected_agents_id_is_refused(make_cluster: Make) -> None:
    h = make_cluster().start(coordinators=1)
    first = h.add_agent(agent_id="agent-b")
    spec = independent(1, sleep=4.0, project="same-id")
    h.client.submit(spec)
    _wait_running(h, spec.id)
    h.add_agent(agent_id="agent-b")  # a second process under the same id
    done = h.wait_finished(spec.id, timeout=60)
    assert done.counts["succeeded"] == 1
    assert _starts(h) == {"t0000": 1}
    log = first.log_path.read_text()  # type: ignore[attr-defined]  # both write there
    assert "AGENT_ID_IN_USE" in log or "connected from another session" in log
    report = h.audit()
    assert report.ok, report.violations


@pytest.mark.timeout(120)
def test_a_task_retried_on_the_same_agent_is_not_failed_by_its_old_claims_delete(
    make_cluster: Make,
) -> None:
    """The echo of the failed attempt's claim delete reached the leader after
    the retry was claimed on the same agent, and was taken for the retry's
    claim being lost: the retry was failed ("attempts exhausted") and the
    task's children cancelled although it succeeded."""
    h = make_cluster(env={"WORKHIVE_CHAIN_AHEAD": "0"}).start(coordinators=1)
    h.cluster.add_agent(failing_first_attempt("s000"))
    spec = chain(3, "retry-same-agent", max_attempts=2)
    h.client.submit(spec)
    assert h.wait_finished(spec.id).counts == {"succeeded": 3}
    assert _starts(h) == {"s000": 2, "s001": 1, "s002": 1}
    report = h.audit()
    assert report.ok, report.violations
