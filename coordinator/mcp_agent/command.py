"""``workhive mcp``: run the MCP server on stdio (docs/mcp.md)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from workhive.agent import PullAgent
from workhive.client import Client, CredentialsError, read_token_file
from workhive.coordinator.logs import configure_logging
from workhive.coordinator.mcp_agent.server import Tools, build


def mcp(
    coordinator: str = typer.Option(
        "127.0.0.1:50051",
        "--coordinator",
        "-c",
        envvar="WORKHIVE_COORDINATOR",
        help="Comma-separated coordinator addresses.",
    ),
    capabilities: str = typer.Option("", help="Comma-separated capabilities of this agent."),
    branch: str = typer.Option(
        "", help="Branch given to the tasks this agent creates, adds or spawns without one."
    ),
    token_file: Path | None = typer.Option(
        None, "--token-file", help="File holding a bearer token (agent and client calls)."
    ),
    agent_id: str | None = typer.Option(None, "--id", help="Agent id (default: host-random)."),
    max_held: int = typer.Option(8, "--max-held", min=1, help="Tasks held at once, at most."),
) -> None:
    """Serve MCP on stdio as one workhive pull agent (its lease lives with the process)."""
    configure_logging("json")  # stderr: stdout carries the protocol
    addresses = [a.strip() for a in coordinator.split(",") if a.strip()]
    if not addresses:
        raise typer.BadParameter("no coordinator address given", param_hint="--coordinator")
    try:
        token = read_token_file(token_file) if token_file else os.environ.get("WORKHIVE_TOKEN")
    except CredentialsError as exc:
        raise typer.BadParameter(exc.args[0]) from None
    caps = [c.strip() for c in capabilities.split(",") if c.strip()]
    agent = PullAgent(
        addresses, agent_id=agent_id, capabilities=caps, max_held=max_held, token=token
    )
    client = Client(addresses, token=token)
    agent.start()
    try:
        build(Tools(agent, client, branch=branch)).run("stdio")
    finally:
        agent.close()
        client.close()
