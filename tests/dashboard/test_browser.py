"""The dashboard in a real headless Chromium against a real cluster.

Coordinator processes on 127.0.0.1 with the dashboard on, real etcd, agents
running sleep commands. ``make screenshots`` runs these same tests with
``WORKHIVE_SCREENSHOTS=docs/dashboard`` to write the pictures of
docs/dashboard.md.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.dashboard.conftest import DashCluster, Page
from tests.harness.dags import layered_dag
from workhive.agent import Agent, Task
from workhive.client import Project
from workhive.client import Task as ClientTask

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def count(tab: Page, pid: str, state: str) -> int:
    return int(tab.page.locator(f'[data-count="{pid}:{state}"]').first.inner_text())


def wait_count(tab: Page, pid: str, state: str, above: int, timeout: float = 30.0) -> int:
    tab.page.wait_for_function(
        "([sel, n]) => { const e = document.querySelector(sel); return e && +e.textContent > n; }",
        arg=[f'[data-count="{pid}:{state}"]', above],
        timeout=timeout * 1000,
    )
    return count(tab, pid, state)


def mark_page(tab: Page) -> None:
    """A value that survives only while the page is not reloaded."""
    tab.page.evaluate("window.__notReloaded = 42")


def not_reloaded(tab: Page) -> bool:
    return bool(tab.page.evaluate("window.__notReloaded === 42"))


def test_overview_shows_the_counts_getstatus_returns(dash_cluster: DashCluster, tab: Page) -> None:
    c = dash_cluster.start(coordinators=3, agents=0)
    spec = layered_dag(60, project="counts")
    c.h.client.submit(spec)
    expected = dict(c.h.status("counts").projects[0].counts)
    tab.page.goto(c.url(c.follower()))
    tab.page.wait_for_selector('[data-count="counts:pending"]')
    states = ["pending", "ready", "assigned", "running", "succeeded", "failed", "cancelled"]
    got = {s: count(tab, "counts", s) for s in states}
    assert got == {s: expected.get(s, 0) for s in states}
    assert sum(got.values()) == 60


def test_counts_change_on_the_page_without_a_reload(dash_cluster: DashCluster, tab: Page) -> None:
    c = dash_cluster.start(coordinators=2, agents=3)
    c.h.client.submit(layered_dag(300, project="live", sleep=(0.03, 0.1)))
    tab.page.goto(c.url(c.follower()))
    tab.page.wait_for_selector('[data-count="live:succeeded"]')
    mark_page(tab)
    first = count(tab, "live", "succeeded")
    later = wait_count(tab, "live", "succeeded", first)
    assert later > first
    assert not_reloaded(tab)


def test_the_page_keeps_updating_after_the_leader_is_sigkilled(
    dash_cluster: DashCluster, tab: Page
) -> None:
    c = dash_cluster.start(coordinators=3, agents=3)
    c.h.client.submit(layered_dag(500, project="failover", sleep=(0.05, 0.12)))
    old = c.h.wait_leader()
    tab.page.goto(c.url(c.follower()))
    done = wait_count(tab, "failover", "succeeded", 0)
    mark_page(tab)
    c.h.leader_proc().kill()  # type: ignore[attr-defined]
    tab.page.wait_for_function(
        "old => { const e = document.getElementById('term');"
        " return e && +e.textContent > 0 && +e.textContent !== old; }",
        arg=old.leader.term,
        timeout=30_000,
    )
    after_kill = count(tab, "failover", "succeeded")
    assert after_kill >= done
    assert wait_count(tab, "failover", "succeeded", after_kill) > after_kill
    assert not_reloaded(tab)
    assert tab.page.locator("#leader-history tr").count() >= 3  # header + two leaders
    tab.shot("overview-after-failover")


def test_a_page_on_the_sigkilled_leader_moves_to_another_replica(
    dash_cluster: DashCluster, tab: Page
) -> None:
    c = dash_cluster.start(coordinators=3, agents=3)
    c.h.client.submit(layered_dag(500, project="moved", sleep=(0.05, 0.12)))
    leader = c.h.wait_leader().leader.leader_id
    tab.page.goto(c.url(leader) + "#/")
    wait_count(tab, "moved", "succeeded", 0)
    c.h.leader_proc().kill()  # type: ignore[attr-defined]
    dead = f":{c.ports[leader]}/"
    tab.page.wait_for_url(lambda url: dead not in url, timeout=20_000)
    tab.page.wait_for_selector('[data-count="moved:succeeded"]')
    moved_at = count(tab, "moved", "succeeded")
    assert wait_count(tab, "moved", "succeeded", moved_at) > moved_at


def test_a_dag_of_1000_tasks_renders_under_2_seconds(dash_cluster: DashCluster, tab: Page) -> None:
    c = dash_cluster.start(coordinators=1, agents=0)
    c.h.client.submit(layered_dag(1000, project="big", width=30))
    c.wait(lambda: bool(c.api("coordinator-0", "api/v1/status")["projects"]), what="project")
    tab.page.goto(c.url("coordinator-0"))
    tab.page.wait_for_selector('[data-project="big"]')
    start = time.monotonic()
    tab.page.evaluate("location.hash = '#/projects/big'")
    tab.page.wait_for_function(
        "() => document.getElementById('dag')?.dataset.drawn === '1000'",
        timeout=10_000,
    )
    elapsed = time.monotonic() - start
    print(f"1,000-task DAG drawn {elapsed:.2f}s after the click")
    assert elapsed < 2.0, f"the 1,000-task DAG took {elapsed:.2f}s"
    assert tab.page.locator("#tasks tr").count() == 501  # header + the first 500 rows


def test_a_wide_layer_is_folded_and_a_click_unfolds_it(
    dash_cluster: DashCluster, tab: Page
) -> None:
    c = dash_cluster.start(coordinators=1, agents=0)
    c.h.client.submit(layered_dag(1000, project="wide", width=100))
    c.wait(lambda: bool(c.api("coordinator-0", "api/v1/status")["projects"]), what="project")
    tab.page.goto(c.url("coordinator-0") + "#/projects/wide")
    dag = tab.page.locator("#dag[data-drawn='1000']")
    dag.wait_for()
    assert dag.get_attribute("data-collapsed") == "10"  # ten layers of 100 tasks
    x, y = tab.page.evaluate(
        """() => {
          const b = app.geometry.blocks.find(Boolean);
          const r = document.getElementById('dag').getBoundingClientRect();
          return [r.left + app.view.x + (b.x + 5) * app.view.k,
                  r.top + app.view.y + (b.y + b.h / 2) * app.view.k];
        }"""
    )
    tab.page.mouse.click(x, y)
    tab.page.wait_for_selector("#dag[data-collapsed='9']")


def test_no_console_errors_on_any_page(dash_cluster: DashCluster, tab: Page) -> None:
    c = dash_cluster.start(coordinators=3, agents=4)
    c.h.client.submit(layered_dag(240, project="tour", width=14, sleep=(0.05, 0.2)))
    name = c.follower()
    base = c.url(name)
    tab.page.goto(base)
    wait_count(tab, "tour", "succeeded", 60, timeout=60)
    tab.shot("overview")
    tab.page.goto(base + "#/projects/tour")
    tab.page.wait_for_selector("#dag[data-drawn='240']")
    tab.page.wait_for_timeout(1500)
    tab.shot("project")
    tab.page.locator("#tasks tr[data-task]").first.click()
    tab.page.wait_for_selector("#task-id")
    tab.shot("task")
    leader = c.h.wait_leader().leader.leader_id
    tab.page.goto(c.url(leader) + "#/agents")  # the leader knows sessions and loads
    tab.page.wait_for_selector("#agents tr[data-agent]")
    tab.shot("agents")
    # each agent's learned speed factor, written with a multiplication sign
    assert "\u00d7" in tab.page.inner_text("#agents")
    assert tab.errors == []


def test_the_task_page_shows_the_progress_a_running_task_reports(
    dash_cluster: DashCluster, tab: Page
) -> None:
    c = dash_cluster.start(coordinators=1, agents=0)
    release = threading.Event()

    def handler(task: Task) -> None:
        task.progress(0.4, "tests written")
        assert release.wait(60)

    agent = Agent(c.h.cluster.coordinator_addresses, agent_id="reporter")
    runner = threading.Thread(target=agent.run, args=(handler,), daemon=True)
    runner.start()
    try:
        c.h.client.submit(Project("prog", (ClientTask("t"),)))
        tab.page.goto(c.url("coordinator-0") + "#/projects/prog/tasks/t")
        tab.page.wait_for_function(
            "() => document.body.innerText.includes('40% — tests written')", timeout=20_000
        )
    finally:
        release.set()
        agent.stop()
        runner.join(10)
    assert tab.errors == []
