"""Tasks that spawn tasks: children commit with the completion, in its
transaction; a refused completion spawns nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.integration.living.conftest import SUM_CMD, Harness
from workhive.agent import PullAgent
from workhive.client import Project, Task

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

Make = Callable[..., Harness]


def test_an_exec_task_spawns_children_that_run_after_it_with_its_result(make_cluster: Make) -> None:
    h = make_cluster().start(coordinators=1)
    h.cluster.add_agent(SUM_CMD, slots=2)
    spawn = [
        {"id": "child", "depends_on": ["root"]},
        {"id": "grandchild", "depends_on": ["child"], "blocks": ["last"]},
    ]
    h.client.submit(
        Project("sp", (Task("root", payload={"spawn": spawn}), Task("last", depends_on=("root",))))
    )
    h.wait_finished("sp")
    assert h.client.result("sp", "child") == {"task": "child", "sum": 2, "parents": ["root"]}
    assert h.client.result("sp", "last")["parents"] == ["grandchild", "root"]
    report = h.audit()
    assert report.ok, report.violations
    assert report.results == report.tasks == 4


def test_children_that_break_a_rule_refuse_the_completion_and_add_nothing(
    make_cluster: Make,
) -> None:
    h = make_cluster().start(coordinators=1)
    h.client.submit(Project("bad", (Task("t"),)))
    with PullAgent(h.cluster.coordinator_addresses, exec_log=h.cluster.exec_log) as a:
        t = a.claim_next(wait=10)
        assert t is not None
        assert not a.complete(t, {"x": 1}, new_tasks=[{"id": "c", "depends_on": ["ghost"]}])
        assert "task 'c': field 'depends_on': unknown dependency 'ghost'" in a.last_refusal
        again = a.claim_next(wait=10)  # handed back: ready again, same attempt
        assert again is not None and again.attempt == t.attempt
        assert a.complete(again, {"x": 2}, new_tasks=[{"id": "c", "depends_on": ["t"]}])
        c = a.claim_next(wait=10)
        assert c is not None and c.task_id == "c" and c.inputs == {"t": {"x": 2}}
        assert a.complete(c)
    done = h.wait_finished("bad")
    assert done.counts == {"succeeded": 2}
