"""An MCP client session (the SDK's own ``ClientSession`` over stdio) to a
``workhive mcp`` process, with helpers that return the tools' structured JSON."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client


class ToolFailed(Exception):
    """The tool answered an MCP tool error (its text)."""


class McpAgent:
    def __init__(self, session: ClientSession, pid_file: Path) -> None:
        self.session = session
        self.pid_file = pid_file

    async def call(self, tool: str, **args: Any) -> Any:
        res = await self.session.call_tool(tool, args)
        if res.is_error:
            raise ToolFailed(" ".join(getattr(c, "text", "") for c in res.content))
        return res.structured_content


@asynccontextmanager
async def mcp_agent(
    addresses: Sequence[str],
    run_dir: Path,
    name: str,
    *extra: str,
    env: dict[str, str] | None = None,
) -> AsyncIterator[McpAgent]:
    """``workhive mcp`` as agent ``name``; its pid is written to ``run_dir/name.pid``."""
    pid_file = run_dir / f"{name}.pid"
    wrapper = (
        "import os,sys; open(sys.argv[1],'w').write(str(os.getpid()));"
        "from workhive.coordinator.cli import main; sys.argv=['workhive', *sys.argv[2:]]; main()"
    )
    params = StdioServerParameters(
        command=sys.executable,
        args=["-c", wrapper, str(pid_file), "mcp", "-c", ",".join(addresses), "--id", name, *extra],
        env={**os.environ, **(env or {})},
    )
    with open(run_dir / f"{name}.log", "a") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield McpAgent(session, pid_file)
