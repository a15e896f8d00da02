"""Chained tasks on a real cluster (docs/scheduling.md, "Chains run back to
back"): coordinator and agent processes on 127.0.0.1 against the process
etcd; each test audits etcd's history and the agents' execution logs, which
judge a chained run against its dependencies' runs on the same agent."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.harness.dags import chain, failing_first_attempt
from tests.integration.cluster.conftest import Harness

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Make = Callable[..., Harness]


def _log(h: Harness) -> list[dict[str, Any]]:
    return [json.loads(line) for line in h.cluster.exec_log.read_text().splitlines()]


@pytest.mark.timeout(120)
def test_a_chain_of_short_tasks_runs_chained_on_its_agent_and_audits_clean(
    make_cluster: Make,
) -> None:
    h = make_cluster().start(coordinators=1, agents=1)
    spec = chain(40, "chain")
    h.client.submit(spec)
    done = h.wait_finished(spec.id)
    assert done.counts == {"succeeded": 40}
    report = h.audit()
    assert report.ok, report.violations
    assert report.chained >= 20  # most were claimed before their dependency ended
    starts = [r["task"] for r in _log(h) if r["event"] == "start"]
    assert starts == [t.id for t in spec.tasks]  # once each, in order


@pytest.mark.timeout(120)
def test_nothing_is_chained_with_chain_ahead_zero(make_cluster: Make) -> None:
    h = make_cluster(env={"WORKHIVE_CHAIN_AHEAD": "0"}).start(coordinators=1, agents=1)
    spec = chain(10, "unchained")
    h.client.submit(spec)
    assert h.wait_finished(spec.id).counts == {"succeeded": 10}
    report = h.audit()
    assert report.ok, report.violations
    assert report.chained == 0


@pytest.mark.timeout(120)
def test_a_task_chained_after_a_failing_task_is_revoked_unrun_and_runs_after_the_retry(
    make_cluster: Make,
) -> None:
    h = make_cluster().start(coordinators=1)
    h.cluster.add_agent(failing_first_attempt("s000"))
    spec = chain(3, "retry-head", max_attempts=2)
    h.client.submit(spec)
    assert h.wait_finished(spec.id).counts == {"succeeded": 3}
    log = _log(h)
    starts = [(r["task"], r["attempt"]) for r in log if r["event"] == "start"]
    assert starts == [("s000", 1), ("s000", 2), ("s001", 1), ("s002", 1)]
    dropped = {r["task"] for r in log if r["event"] == "dropped"}
    assert "s001" in dropped  # its first, chained claim was revoked unrun
    report = h.audit()
    assert report.ok, report.violations
    assert report.chained >= 2
