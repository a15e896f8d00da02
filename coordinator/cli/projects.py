"""``workhive submit``, ``workhive status`` and ``workhive cancel``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from google.protobuf.json_format import MessageToDict
from rich.console import Console
from rich.table import Table

from workhive.coordinator.cli import exit_codes
from workhive.coordinator.scheduling.loader import ProjectError, load_project
from workhive.coordinator.service.client import ClientError, WorkhiveClient
from workhive.coordinator.service.convert import state_name
from workhive.v1 import client_pb2

err = Console(stderr=True)

COORDINATORS = typer.Option(
    "127.0.0.1:50051",
    "--coordinator",
    "-c",
    envvar="WORKHIVE_COORDINATOR",
    help="Comma-separated coordinator addresses (any replica; the leader is found).",
)


TLS = typer.Option(
    False, "--tls", envvar="WORKHIVE_CLIENT_TLS", help="Dial over TLS (implied by --tls-ca)."
)
TLS_CA = typer.Option(
    None, "--tls-ca", envvar="WORKHIVE_TLS_CA", help="CA (PEM) of the coordinators' certificate."
)
TLS_CERT = typer.Option(
    None, "--tls-cert", envvar="WORKHIVE_CLIENT_TLS_CERT", help="Client certificate (mTLS)."
)
TLS_KEY = typer.Option(
    None, "--tls-key", envvar="WORKHIVE_CLIENT_TLS_KEY", help="Client key (mTLS)."
)
TOKEN_FILE = typer.Option(
    None,
    "--token-file",
    envvar="WORKHIVE_CLIENT_TOKEN_FILE",
    help="File holding a client bearer token (or env WORKHIVE_CLIENT_TOKEN).",
)


def _client(
    addresses: str,
    timeout: float = 15.0,
    *,
    tls: bool = False,
    tls_ca: Path | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    token_file: Path | None = None,
) -> WorkhiveClient:
    import os

    from workhive.coordinator.cli.agent import client_security

    token = os.environ.get("WORKHIVE_CLIENT_TOKEN") if token_file is None else None
    creds, token = client_security(tls, tls_ca, tls_cert, tls_key, token, token_file)
    return WorkhiveClient(
        [a.strip() for a in addresses.split(",") if a.strip()],
        timeout=timeout,
        credentials=creds,
        metadata=(("authorization", f"Bearer {token}"),) if token else (),
    )


def _sec(
    tls: bool,
    tls_ca: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    token_file: Path | None,
) -> dict[str, Any]:
    return {
        "tls": tls,
        "tls_ca": tls_ca,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "token_file": token_file,
    }


def _fail(exc: ClientError) -> typer.Exit:
    import grpc

    err.print(f"[red]error:[/red] {exc} ({exc.code.name}{', ' + exc.reason if exc.reason else ''})")
    unavailable = exc.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    return typer.Exit(exit_codes.UNAVAILABLE if unavailable else exit_codes.FAILED)


def submit(
    file: Path = typer.Argument(..., help="Project file (YAML or JSON)."),
    coordinator: str = COORDINATORS,
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    tls: bool = TLS,
    tls_ca: Path | None = TLS_CA,
    tls_cert: Path | None = TLS_CERT,
    tls_key: Path | None = TLS_KEY,
    token_file: Path | None = TOKEN_FILE,
) -> None:
    """Validate a project file and submit it atomically."""
    sec = _sec(tls, tls_ca, tls_cert, tls_key, token_file)
    try:
        spec = load_project(file)
    except ProjectError as exc:
        err.print(f"[red]invalid project:[/red] {exc}")
        raise typer.Exit(exit_codes.FAILED) from None
    with _client(coordinator, **sec) as client:
        try:
            resp = client.submit(spec)
        except ClientError as exc:
            raise _fail(exc) from None
    if json_out:
        typer.echo(json.dumps(MessageToDict(resp, preserving_proto_field_name=True)))
    else:
        err.print(f"submitted [bold]{resp.project_id}[/bold]: {resp.task_count} tasks")


def _status_table(resp: client_pb2.GetStatusResponse) -> None:
    out = Console()
    leader = resp.leader
    out.print(f"leader: {leader.leader_id or '-'} {leader.address} (term {leader.term})")
    states = ["pending", "ready", "assigned", "running", "succeeded", "failed", "cancelled"]
    table = Table("project", *states, "finished")
    for p in resp.projects:
        table.add_row(p.project_id, *[str(p.counts.get(s, 0)) for s in states], str(p.finished))
    out.print(table)
    agents = Table("agent", "slots", "running", "queued", "load (s)", "connected")
    for a in resp.agents:
        agents.add_row(
            a.agent_id,
            str(a.slots),
            str(a.running),
            str(a.queued),
            f"{a.load_seconds:.1f}",
            str(a.connected),
        )
    out.print(agents)
    if resp.metrics:
        m = Table("metric", "value")
        for k, v in sorted(resp.metrics.items()):
            m.add_row(k, f"{v:.4g}")
        out.print(m)
    for p in resp.projects:
        for t in p.tasks:
            out.print(f"{p.project_id}/{t.task_id}: {state_name(t.state)} {t.agent_id} {t.reason}")


def status(
    project: str = typer.Argument("", help="Project id (default: every project)."),
    coordinator: str = COORDINATORS,
    tasks: bool = typer.Option(False, "--tasks", help="Include per-task states."),
    json_out: bool = typer.Option(False, "--json", help="Print the status as JSON."),
    tls: bool = TLS,
    tls_ca: Path | None = TLS_CA,
    tls_cert: Path | None = TLS_CERT,
    tls_key: Path | None = TLS_KEY,
    token_file: Path | None = TOKEN_FILE,
) -> None:
    """Show projects, per-task states, agents, the leader and the seed's metrics."""
    sec = _sec(tls, tls_ca, tls_cert, tls_key, token_file)
    with _client(coordinator, **sec) as client:
        try:
            resp = client.status(project, include_tasks=tasks)
        except ClientError as exc:
            raise _fail(exc) from None
    if project and not resp.projects:
        err.print(f"[red]unknown project:[/red] {project}")
        raise typer.Exit(exit_codes.FAILED)
    if json_out:
        typer.echo(json.dumps(MessageToDict(resp, preserving_proto_field_name=True)))
    else:
        _status_table(resp)


def cancel(
    project: str = typer.Argument(..., help="Project id."),
    coordinator: str = COORDINATORS,
    reason: str = typer.Option("cancelled by user", help="Recorded with each cancelled task."),
    tls: bool = TLS,
    tls_ca: Path | None = TLS_CA,
    tls_cert: Path | None = TLS_CERT,
    tls_key: Path | None = TLS_KEY,
    token_file: Path | None = TOKEN_FILE,
) -> None:
    """Cancel every task of a project that has not finished."""
    sec = _sec(tls, tls_ca, tls_cert, tls_key, token_file)
    with _client(coordinator, **sec) as client:
        try:
            resp = client.cancel(project, reason)
        except ClientError as exc:
            raise _fail(exc) from None
    err.print(f"cancelled {resp.cancelled} tasks of {project}")


def register(app: typer.Typer) -> None:
    app.command()(submit)
    app.command()(status)
    app.command()(cancel)
