"""Results: a task completes with a JSON result, stored with its completion,
read back by the client, handed to its children, kept across a failover."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.living.conftest import SUM_CMD, Harness
from workhive.client import Project, Task

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

Make = Callable[..., Harness]


def _diamond(pid: str, sleep: float = 0.05) -> Project:
    p: dict[str, Any] = {"sleep": sleep}
    return Project(
        pid,
        (
            Task("a", payload=p),
            Task("b", depends_on=("a",), payload=p),
            Task("c", depends_on=("a",), payload=p),
            Task("d", depends_on=("b", "c"), payload=p),
        ),
    )


def test_a_childs_inputs_are_its_parents_results(make_cluster: Make) -> None:
    h = make_cluster().start(coordinators=1)
    h.cluster.add_agent(SUM_CMD, slots=2)
    h.client.submit(_diamond("diamond"))
    h.wait_finished("diamond")
    assert h.client.result("diamond", "a") == {"task": "a", "sum": 1, "parents": []}
    assert h.client.result("diamond", "b") == {"task": "b", "sum": 2, "parents": ["a"]}
    assert h.client.result("diamond", "d") == {"task": "d", "sum": 5, "parents": ["b", "c"]}
    report = h.audit()
    assert report.ok, report.violations


def test_a_result_over_64_kib_fails_the_task_and_stores_nothing(make_cluster: Make) -> None:
    h = make_cluster().start(coordinators=1)
    h.cluster.add_agent(SUM_CMD)
    h.client.submit(Project("big", (Task("t", payload={"big": 70_000}),)))
    h.wait_finished("big")
    st = h.client.task("big", "t")
    assert str(st.state) == "failed"
    assert "limit 65536" in st.reason
    assert st.result is None


def test_results_survive_a_leader_failover_and_still_reach_children(make_cluster: Make) -> None:
    h = make_cluster({"WORKHIVE_AGENT_LEASE_TTL": "3"}).start(coordinators=2)
    h.cluster.add_agent(SUM_CMD, slots=2)
    chain = tuple(
        Task(f"s{i}", depends_on=(f"s{i - 1}",) if i else (), payload={"sleep": 0.3})
        for i in range(8)
    )
    h.client.submit(Project("chain", chain))
    deadline = time.monotonic() + 30
    while h.client.result("chain", "s2") is None:
        assert time.monotonic() < deadline, "s2 never completed"
        time.sleep(0.1)
    term = h.wait_leader().leader.term
    h.leader_proc().signal(signal.SIGKILL)  # type: ignore[attr-defined]
    h.wait_leader(not_term=term)
    h.wait_finished("chain")
    assert h.client.result("chain", "s2") == {"task": "s2", "sum": 3, "parents": ["s1"]}
    assert h.client.result("chain", "s7") == {"task": "s7", "sum": 8, "parents": ["s6"]}
    report = h.audit()
    assert report.ok, report.violations
