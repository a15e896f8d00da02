"""The MCP server of ``workhive mcp`` (docs/mcp.md).

Contract: the process is one pull agent (``workhive.agent.PullAgent``: its
own lease, kept alive by heartbeats while the process lives) plus a client
(``workhive.client.Client``). Every tool answers structured JSON; a refusal
is an MCP tool error whose text is the CLI's message for the same failure,
and changes nothing. When stdio closes the agent hands back what it holds
and ends its session; if the process is killed its lease expires and etcd
frees its claims. ``claim_next(project=...)`` hands back at once (release)
any task of another project and keeps waiting.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from workhive.agent import PullAgent, Task
from workhive.client import Client, Project, WorkhiveError
from workhive.coordinator.mcp_agent.inputs import TaskInput

MAX_WAIT = 300.0


def task_json(t: Task) -> dict[str, Any]:
    return {
        "project": t.project_id,
        "id": t.task_id,
        "payload": t.payload,
        "attempt": t.attempt,
        "priority": t.priority,
        "kind": t.kind,
        "branch": t.branch,
        "parents": dict(t.inputs),
    }


class Tools:
    """The tools, over one pull agent and one client."""

    def __init__(self, agent: PullAgent, client: Client, *, branch: str = "") -> None:
        self.agent = agent
        self.client = client
        self.branch = branch  # given to new tasks without one

    def _tasks(self, tasks: list[TaskInput]) -> list[Any]:
        return [t.to_task(self.branch) for t in tasks]

    def _held(self, project: str, task_id: str) -> Task:
        for t in self.agent.held():
            if (t.project_id, t.task_id) == (project, task_id):
                return t
        raise ToolError(f"error: task {project}/{task_id} is not held by this agent")

    async def _call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kw)
        except WorkhiveError as exc:
            raise ToolError(f"error: {exc}") from None

    async def list_projects(self) -> dict[str, Any]:
        st = await self._call(self.client.status)
        return {
            "projects": [
                {"project": p.project_id, "counts": dict(p.counts), "finished": p.finished}
                for p in st.projects
            ]
        }

    async def project_status(self, project: str) -> dict[str, Any]:
        st = await self._call(self.client.status, project, tasks=True)
        p = st.project(project)
        if p is None:
            raise ToolError(f"error: unknown project: {project}")
        return {
            "project": project,
            "counts": dict(p.counts),
            "finished": p.finished,
            "ready": sorted(t.task_id for t in p.tasks if str(t.state) == "ready"),
            "held": [
                {"task": t.task_id, "agent": t.agent_id, "state": str(t.state)}
                for t in p.tasks
                if str(t.state) in ("assigned", "running")
            ],
        }

    async def create_project(self, project: str, tasks: list[TaskInput]) -> dict[str, Any]:
        spec = Project(project, tuple(self._tasks(tasks)))
        done = await self._call(self.client.submit, spec)
        return {"project": done.project_id, "task_count": done.task_count}

    async def add_tasks(self, project: str, tasks: list[TaskInput]) -> dict[str, Any]:
        added = await self._call(self.client.add_tasks, project, self._tasks(tasks))
        return {"project": project, "added": added.added, "task_count": added.task_count}

    async def claim_next(
        self, project: str | None = None, wait_seconds: float = 30
    ) -> dict[str, Any]:
        until = time.monotonic() + min(max(wait_seconds, 0.0), MAX_WAIT)
        while True:
            left = until - time.monotonic()
            t = await asyncio.to_thread(self.agent.claim_next, max(left, 0.0))
            if t is None:
                return {"task": None}
            if project is None or t.project_id == project:
                return {"task": task_json(t)}
            await asyncio.to_thread(self.agent.release, t, f"wanted project {project}")
            await asyncio.sleep(0.2)  # others may take it; no hot loop on one task
            if time.monotonic() >= until:
                return {"task": None}

    async def complete(
        self,
        project: str,
        task_id: str,
        result: Any = None,
        new_tasks: list[TaskInput] | None = None,
    ) -> dict[str, Any]:
        t = self._held(project, task_id)
        children = self._tasks(new_tasks or [])
        try:
            ok = await asyncio.to_thread(self.agent.complete, t, result, new_tasks=children)
        except ValueError as exc:
            raise ToolError(f"error: task {project}/{task_id}: {exc} (nothing committed)") from None
        if not ok:
            why = self.agent.last_refusal
            raise ToolError(f"error: task {project}/{task_id}: completion refused: {why}")
        return {"project": project, "task_id": task_id, "completed": True, "spawned": len(children)}

    async def fail(
        self, project: str, task_id: str, reason: str, retryable: bool = False
    ) -> dict[str, Any]:
        t = self._held(project, task_id)
        ok = await asyncio.to_thread(self.agent.fail, t, reason, retryable=retryable)
        if not ok:
            raise ToolError(f"error: task {project}/{task_id}: failure refused (claim gone)")
        return {"project": project, "task_id": task_id, "failed": True}

    async def report_progress(
        self, project: str, task_id: str, fraction: float, note: str = ""
    ) -> dict[str, Any]:
        t = self._held(project, task_id)
        try:
            t.progress(fraction, note)
        except ValueError as exc:
            raise ToolError(f"error: task {project}/{task_id}: {exc}") from None
        return {"project": project, "task_id": task_id, "progress": fraction}

    async def release(self, project: str, task_id: str) -> dict[str, Any]:
        t = self._held(project, task_id)
        ok = await asyncio.to_thread(self.agent.release, t)
        if not ok:
            raise ToolError(f"error: task {project}/{task_id}: release refused (claim gone)")
        return {"project": project, "task_id": task_id, "released": True}


def build(tools: Tools) -> MCPServer[Any]:
    """The MCP server with every tool registered (structured output)."""
    server: MCPServer[Any] = MCPServer(
        "workhive",
        instructions=(
            "A shared todo graph for several agents. claim_next gives you a task whose "
            "dependencies are done, with its parents' results; finish it with complete "
            "(a JSON result, optional new_tasks), fail or release. add_tasks grows the graph."
        ),
    )
    for fn, doc in (
        (tools.list_projects, "Every project with its task counts by state."),
        (tools.project_status, "Counts, ready tasks, and who holds what."),
        (tools.create_project, "Create a project from tasks (a DAG), all at once."),
        (tools.add_tasks, "Add tasks to a running project (one transaction)."),
        (tools.claim_next, "Claim your next task (waits up to wait_seconds)."),
        (tools.complete, "Complete a task you hold, with a JSON result and new tasks."),
        (tools.fail, "Fail a task you hold (retryable: it may run again)."),
        (tools.release, "Hand a task back unfinished: ready again at once."),
        (
            tools.report_progress,
            "Say how far a task you hold got (fraction 0..1, a short note): shown in status.",
        ),
    ):
        server.tool(name=fn.__name__, description=doc, structured_output=True)(fn)
    return server
