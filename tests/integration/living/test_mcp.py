"""``workhive mcp``: three MCP agents (the MCP SDK's own client over stdio,
real ``workhive mcp`` processes) share one todo graph on a real cluster."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.living.conftest import Harness
from tests.integration.living.mcp_session import McpAgent, ToolFailed, mcp_agent

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

Make = Callable[..., Harness]
TTL = 3

GRAPH: list[dict[str, Any]] = [
    {"id": "design", "payload": {"todo": "write the design note"}},
    {"id": "impl", "depends_on": ["design"], "requires": ["python"]},
    {"id": "docs", "depends_on": ["design"], "requires": ["writing"]},
    {"id": "deploy", "depends_on": ["impl", "docs"]},
]


def _env(h: Harness) -> dict[str, str]:
    return {"WORKHIVE_EXEC_LOG": str(h.cluster.exec_log)}


async def _work(agent: McpAgent, caps: set[str], seen: list[dict[str, Any]], until: float) -> None:
    """Claim and complete until nothing comes; record what was claimed."""
    while time.monotonic() < until:
        got = await agent.call("claim_next", project="app", wait_seconds=3)
        task = got["task"]
        if task is None:
            return
        status = await agent.call("project_status", project="app")
        seen.append({**task, "caps": caps, "counts": status["counts"]})
        new = None
        if task["id"] == "design":
            new = [{"id": "migration", "depends_on": ["design"], "blocks": ["deploy"]}]
        await agent.call(
            "complete", project="app", task_id=task["id"], result={"by": task["id"]}, new_tasks=new
        )


def test_three_mcp_agents_share_one_graph(make_cluster: Make, tmp_path: Path) -> None:
    h = make_cluster().start(coordinators=1)
    addrs = h.cluster.coordinator_addresses
    seen: list[dict[str, Any]] = []

    async def main() -> None:
        async with (
            mcp_agent(addrs, tmp_path, "ada", "--capabilities", "python", env=_env(h)) as ada,
            mcp_agent(addrs, tmp_path, "bob", "--capabilities", "writing", env=_env(h)) as bob,
            mcp_agent(addrs, tmp_path, "cy", env=_env(h)) as cy,
        ):
            created = await ada.call("create_project", project="app", tasks=GRAPH)
            assert created == {"project": "app", "task_count": 4}
            added = await cy.call(
                "add_tasks",
                project="app",
                tasks=[{"id": "test", "depends_on": ["impl"], "blocks": ["deploy"]}],
            )
            assert added["task_count"] == 5
            until = time.monotonic() + 60
            await asyncio.gather(
                _work(ada, {"python"}, seen, until),
                _work(bob, {"writing"}, seen, until),
                _work(cy, set(), seen, until),
            )
            listed = await cy.call("list_projects")
            assert {"project": "app", "counts": {"succeeded": 6}, "finished": True} in listed[
                "projects"
            ]

    asyncio.run(main())
    by_id = {t["id"]: t for t in seen}
    assert set(by_id) == {"design", "impl", "docs", "deploy", "migration", "test"}
    assert by_id["impl"]["caps"] == {"python"} and by_id["docs"]["caps"] == {"writing"}
    assert by_id["impl"]["parents"] == {"design": {"by": "design"}}
    assert set(by_id["deploy"]["parents"]) == {"impl", "docs", "migration", "test"}
    assert [t["id"] for t in seen].index("deploy") == len(seen) - 1
    report = h.audit()
    assert report.ok, report.violations


def test_a_killed_mcp_server_s_claim_is_claimed_by_another_within_the_lease_ttl(
    make_cluster: Make, tmp_path: Path
) -> None:
    h = make_cluster({"WORKHIVE_AGENT_LEASE_TTL": str(TTL)}).start(coordinators=1)
    addrs = h.cluster.coordinator_addresses

    async def main() -> float:
        async with (
            mcp_agent(addrs, tmp_path, "other", env=_env(h)) as other,
            mcp_agent(addrs, tmp_path, "doomed", env=_env(h)) as doomed,
        ):
            await other.call("create_project", project="app", tasks=[{"id": "only"}])
            got = await doomed.call("claim_next", wait_seconds=10)
            assert got["task"]["id"] == "only"
            os.kill(int(doomed.pid_file.read_text()), signal.SIGKILL)
            killed = time.monotonic()
            again = await other.call("claim_next", wait_seconds=TTL + 5)
            took = time.monotonic() - killed
            assert again["task"]["id"] == "only"
            await other.call("complete", project="app", task_id="only")
            return took

    try:
        took = asyncio.run(main())
    except BaseExceptionGroup as eg:  # the killed server's stdio closing under the client
        if not all(
            isinstance(e, (BrokenPipeError, ConnectionError, OSError)) for e in eg.exceptions
        ):
            raise
        pytest.fail(f"client error after the kill: {eg!r}")
    assert took <= TTL + 1, f"claimed again after {took:.2f}s (TTL {TTL}s)"


def test_every_bad_input_is_a_tool_error_with_the_cli_message_and_changes_nothing(
    make_cluster: Make, tmp_path: Path
) -> None:
    h = make_cluster().start(coordinators=1)
    addrs = h.cluster.coordinator_addresses

    async def main() -> None:
        async with mcp_agent(addrs, tmp_path, "a", env=_env(h)) as a:
            await a.call(
                "create_project",
                project="app",
                tasks=[{"id": "x"}, {"id": "y", "depends_on": ["x"]}],
            )
            bad_adds = [
                ([{"id": "z", "depends_on": ["y"], "blocks": ["x"]}], "cycle: z -> y -> x -> z"),
                (
                    [{"id": "z", "depends_on": ["ghost"]}],
                    "task 'z': field 'depends_on': unknown dependency",
                ),
                ([{"id": "x"}], "task 'x': field 'id': task id already exists"),
            ]
            for tasks, message in bad_adds:
                with pytest.raises(ToolFailed, match=message):
                    await a.call("add_tasks", project="app", tasks=tasks)
            with pytest.raises(ToolFailed, match="already exists"):
                await a.call("create_project", project="app", tasks=[{"id": "q"}])
            got = await a.call("claim_next", project="app", wait_seconds=10)
            assert got["task"]["id"] == "x"
            with pytest.raises(ToolFailed, match="limit 65536"):
                await a.call("complete", project="app", task_id="x", result="r" * 70_000)
            with pytest.raises(ToolFailed, match="unknown dependency 'ghost'"):
                await a.call(
                    "complete",
                    project="app",
                    task_id="x",
                    new_tasks=[{"id": "c", "depends_on": ["ghost"]}],
                )
            with pytest.raises(ToolFailed, match="not held by this agent"):
                await a.call("release", project="app", task_id="y")
            status = await a.call("project_status", project="app")
            assert status["counts"] in ({"ready": 1, "pending": 1}, {"running": 1, "pending": 1})

    asyncio.run(main())
    assert h.client.status("app").project("app").counts.get("succeeded", 0) == 0


def test_an_mcp_agent_reports_progress_that_the_task_view_shows(
    make_cluster: Make, tmp_path: Path
) -> None:
    h = make_cluster().start(coordinators=1)
    addrs = h.cluster.coordinator_addresses

    async def main() -> None:
        async with mcp_agent(addrs, tmp_path, "a", env=_env(h)) as a:
            await a.call("create_project", project="app", tasks=[{"id": "x"}])
            await a.call("claim_next", project="app", wait_seconds=10)
            with pytest.raises(ToolFailed, match=r"within 0\.\.1"):
                await a.call("report_progress", project="app", task_id="x", fraction=1.5)
            await a.call(
                "report_progress", project="app", task_id="x", fraction=0.4, note="tests written"
            )
            until = time.monotonic() + 10
            while (t := h.client.task("app", "x")).progress is None:
                assert time.monotonic() < until, "the leader never showed the progress"
                await asyncio.sleep(0.05)
            assert (t.progress, t.progress_note) == (0.4, "tests written")
            await a.call("complete", project="app", task_id="x")
            until = time.monotonic() + 10
            while h.client.task("app", "x").progress is not None:  # finished: none shown
                assert time.monotonic() < until, "a finished task still shows progress"
                await asyncio.sleep(0.05)

    asyncio.run(main())


async def _until_finished(agent: McpAgent, h: Harness, pid: str, until: float) -> int:
    """Claim and complete (result: the sum of the parents' plus one) until
    the project finished; returns how many this agent completed."""
    done = 0
    while time.monotonic() < until:
        got = await agent.call("claim_next", project=pid, wait_seconds=2)
        task = got["task"]
        if task is None:
            st = await agent.call("project_status", project=pid)
            if st["finished"]:
                return done
            continue
        await asyncio.sleep(0.1)
        total = 1 + sum(p["sum"] for p in task["parents"].values())
        await agent.call("complete", project=pid, task_id=task["id"], result={"sum": total})
        done += 1
    raise AssertionError("the project did not finish in time")


def test_the_leader_killed_mid_run_loses_doubles_and_reorders_nothing(
    make_cluster: Make, tmp_path: Path
) -> None:
    h = make_cluster({"WORKHIVE_AGENT_LEASE_TTL": "6"}).start(coordinators=2)
    addrs = h.cluster.coordinator_addresses
    layers = [[f"l{k}t{i}" for i in range(4)] for k in range(5)]
    tasks = [
        {"id": tid, "depends_on": layers[k - 1][: i + 1] if k else []}
        for k, layer in enumerate(layers)
        for i, tid in enumerate(layer)
    ]

    async def main() -> list[int]:
        async with (
            mcp_agent(addrs, tmp_path, "m1", env=_env(h)) as m1,
            mcp_agent(addrs, tmp_path, "m2", env=_env(h)) as m2,
            mcp_agent(addrs, tmp_path, "m3", env=_env(h)) as m3,
        ):
            await m1.call("create_project", project="fo", tasks=tasks)
            until = time.monotonic() + 90
            work = asyncio.gather(*(_until_finished(m, h, "fo", until) for m in (m1, m2, m3)))
            while (await m1.call("project_status", project="fo"))["counts"].get("succeeded", 0) < 6:
                await asyncio.sleep(0.1)
            term = h.wait_leader().leader.term
            h.leader_proc().signal(signal.SIGKILL)  # type: ignore[attr-defined]
            h.wait_leader(not_term=term)
            return list(await work)

    counts = asyncio.run(main())
    assert sum(counts) == 20
    assert h.client.result("fo", "l4t3") is not None
    report = h.audit()
    assert report.ok, report.violations
    assert report.results == report.tasks == 20
