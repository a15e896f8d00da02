"""``workhive submit``, ``workhive status``, ``workhive cancel`` and ``workhive wait``:
thin commands over :class:`workhive.client.Client` (docs/client.md).

Exit codes (``exit_codes``): 0 ok; 1 the work failed (invalid project,
unknown project, a task failed for ``wait``); 2 usage (bad flags, no address,
unreadable credentials); 69 no coordinator, no leader or no etcd answered, or
``status`` could only give a stale answer (printed all the same, marked
stale); 75 retry later (a concurrent submit of the same project); 77
credentials refused or not allowed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from workhive.client import (
    AccessDenied,
    Client,
    ClusterStatus,
    CredentialsError,
    TaskStatus,
    Unavailable,
    WaitTimeout,
    WorkhiveError,
)
from workhive.coordinator.cli import exit_codes
from workhive.coordinator.project_files import ProjectError, load_project

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
TIMEOUT = typer.Option(
    15.0, "--timeout", min=0.1, help="Seconds to keep retrying while no leader answers."
)


T = TypeVar("T")


def _client(
    addresses: str,
    timeout: float = 15.0,
    *,
    tls: bool = False,
    tls_ca: Path | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    token_file: Path | None = None,
) -> Client:
    """A client from the common options; bad options are usage errors (exit 2)."""
    import os

    if not [a for a in addresses.split(",") if a.strip()]:
        raise typer.BadParameter("no coordinator address given", param_hint="--coordinator")
    token = os.environ.get("WORKHIVE_CLIENT_TOKEN") or None if token_file is None else None
    try:
        return Client(
            addresses,
            timeout=timeout,
            tls=tls,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            token=token,
            token_file=token_file,
        )
    except CredentialsError as exc:
        raise typer.BadParameter(exc.args[0]) from None


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


def call(fn: Callable[[Client], T], coordinator: str, timeout: float, sec: dict[str, Any]) -> T:
    """One client call from the common options; a failure is the CLI's
    one-line error and the exit code that says what kind it was."""
    with _client(coordinator, timeout, **sec) as client:
        try:
            return fn(client)
        except WorkhiveError as exc:
            raise fail(exc) from None


def fail(exc: WorkhiveError) -> typer.Exit:
    """Print the error on one line; the exit code says what kind it was."""
    err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
    if isinstance(exc, (Unavailable, WaitTimeout)):
        return typer.Exit(exit_codes.UNAVAILABLE)
    if isinstance(exc, AccessDenied):
        return typer.Exit(exit_codes.NOPERM)
    if exc.code == "ABORTED":  # e.g. a concurrent submit of the same project
        return typer.Exit(exit_codes.TEMPFAIL)
    return typer.Exit(exit_codes.FAILED)


def submit(
    file: Path = typer.Argument(..., help="Project file (YAML or JSON)."),
    coordinator: str = COORDINATORS,
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    timeout: float = TIMEOUT,
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
        err.print(f"[red]invalid project:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(exit_codes.FAILED) from None
    resp = call(lambda c: c.submit(spec), coordinator, timeout, sec)
    if json_out:
        typer.echo(json.dumps(asdict(resp)))
    else:
        err.print(f"submitted [bold]{escape(resp.project_id)}[/bold]: {resp.task_count} tasks")


def _status_table(resp: ClusterStatus) -> None:
    out = Console()
    leader = resp.leader
    out.print(f"leader: {leader.leader_id or '-'} {leader.address} (term {leader.term})")
    states = ["pending", "ready", "assigned", "running", "succeeded", "failed", "cancelled"]
    table = Table("project", *states, "finished")
    for p in resp.projects:
        table.add_row(p.project_id, *[str(p.count(s)) for s in states], str(p.finished))
    out.print(table)
    agents = Table("agent", "slots", "running", "queued", "load (s)", "speed", "connected")
    for a in resp.agents:
        agents.add_row(
            a.agent_id,
            str(a.slots),
            str(a.running),
            str(a.queued),
            f"{a.load_seconds:.1f}",
            f"x{a.speed_factor:.2f}" if a.speed_factor else "-",
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
            out.print(f"{p.project_id}/{t.task_id}: {task_line(t)}", highlight=False)


def task_line(t: TaskStatus) -> str:
    """State, agent, attempt, and when known the running attempt's progress
    and deadline, the next retry's time (UTC) and the last failed attempt's
    reason."""
    parts = [str(t.state), t.agent_id, f"attempt {t.attempt}" if t.attempt else ""]
    if t.progress is not None:
        parts.append(f"{t.progress:.0%}" + (f" ({t.progress_note})" if t.progress_note else ""))
    if t.deadline_at:
        parts.append(f"deadline {_utc(t.deadline_at)}")
    if t.retry_at:
        parts.append(f"next retry {_utc(t.retry_at)}")
    if t.last_failure and t.last_failure != t.reason:
        parts.append(f"last failure: {t.last_failure}")
    parts.append(t.reason)
    return escape(" ".join(x for x in parts if x))


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def status(
    project: str = typer.Argument("", help="Project id (default: every project)."),
    coordinator: str = COORDINATORS,
    tasks: bool = typer.Option(False, "--tasks", help="Include per-task states."),
    json_out: bool = typer.Option(False, "--json", help="Print the status as JSON."),
    timeout: float = TIMEOUT,
    tls: bool = TLS,
    tls_ca: Path | None = TLS_CA,
    tls_cert: Path | None = TLS_CERT,
    tls_key: Path | None = TLS_KEY,
    token_file: Path | None = TOKEN_FILE,
) -> None:
    """Show projects, per-task states, agents, the leader and the seed's metrics.

    A stale answer (the replica could not reach etcd) is printed with
    ``"stale": true`` (JSON) or a STALE line (stderr), and exits 69.
    """
    sec = _sec(tls, tls_ca, tls_cert, tls_key, token_file)
    resp = call(lambda c: c.status(project, tasks=tasks), coordinator, timeout, sec)
    if project and resp.project(project) is None:
        err.print(f"[red]unknown project:[/red] {escape(project)}", highlight=False)
        raise typer.Exit(exit_codes.FAILED)
    if json_out:
        typer.echo(json.dumps(asdict(resp)))
    else:
        _status_table(resp)
    if resp.stale:
        err.print(f"[yellow]STALE:[/yellow] {escape(resp.stale_reason)}", highlight=False)
        raise typer.Exit(exit_codes.UNAVAILABLE)


def cancel(
    project: str = typer.Argument(..., help="Project id."),
    coordinator: str = COORDINATORS,
    reason: str = typer.Option("cancelled by user", help="Recorded with each cancelled task."),
    timeout: float = TIMEOUT,
    tls: bool = TLS,
    tls_ca: Path | None = TLS_CA,
    tls_cert: Path | None = TLS_CERT,
    tls_key: Path | None = TLS_KEY,
    token_file: Path | None = TOKEN_FILE,
) -> None:
    """Cancel every task of a project that has not finished."""
    sec = _sec(tls, tls_ca, tls_cert, tls_key, token_file)
    cancelled = call(lambda c: c.cancel(project, reason), coordinator, timeout, sec)
    err.print(f"cancelled {cancelled} tasks of {escape(project)}")


def delete(
    project: str = typer.Argument(..., help="Project id."),
    coordinator: str = COORDINATORS,
    compact: bool = typer.Option(
        False, "--compact", help="Also compact etcd's history up to the delete (frees space)."
    ),
    timeout: float = TIMEOUT,
    tls: bool = TLS,
    tls_ca: Path | None = TLS_CA,
    tls_cert: Path | None = TLS_CERT,
    tls_key: Path | None = TLS_KEY,
    token_file: Path | None = TOKEN_FILE,
) -> None:
    """Delete a finished project: its tasks, results and meta (cancel a running one first)."""
    sec = _sec(tls, tls_ca, tls_cert, tls_key, token_file)
    tasks = call(lambda c: c.delete(project, compact=compact), coordinator, timeout, sec)
    err.print(f"deleted {project} ({tasks} tasks)")


def drain(
    agent: str = typer.Argument(..., help="Agent id."),
    coordinator: str = COORDINATORS,
    reason: str = typer.Option("operator", help="Logged by the agent and the leader."),
    timeout: float = TIMEOUT,
    tls: bool = TLS,
    tls_ca: Path | None = TLS_CA,
    tls_cert: Path | None = TLS_CERT,
    tls_key: Path | None = TLS_KEY,
    token_file: Path | None = TOKEN_FILE,
) -> None:
    """Ask a connected agent to drain: hand its queue back, finish what runs, exit."""
    sec = _sec(tls, tls_ca, tls_cert, tls_key, token_file)
    call(lambda c: c.drain_agent(agent, reason), coordinator, timeout, sec)
    err.print(f"asked {agent} to drain")


def wait(
    project: str = typer.Argument(..., help="Project id."),
    coordinator: str = COORDINATORS,
    timeout: float = typer.Option(600.0, "--timeout", min=0.1, help="Give up after this long."),
    json_out: bool = typer.Option(False, "--json", help="Print the final status as JSON."),
    tls: bool = TLS,
    tls_ca: Path | None = TLS_CA,
    tls_cert: Path | None = TLS_CERT,
    tls_key: Path | None = TLS_KEY,
    token_file: Path | None = TOKEN_FILE,
) -> None:
    """Wait until every task of a project finished; exit 0 only if all succeeded."""
    sec = _sec(tls, tls_ca, tls_cert, tls_key, token_file)
    done = call(lambda c: c.wait(project, timeout), coordinator, min(timeout, 15.0), sec)
    if json_out:
        typer.echo(json.dumps(asdict(done)))
    else:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(done.counts.items()))
        err.print(escape(f"{project}: {counts}"))
    ok = done.count("succeeded") == sum(done.counts.values())
    raise typer.Exit(exit_codes.OK if ok else exit_codes.FAILED)


def register(app: typer.Typer) -> None:
    app.command()(submit)
    app.command()(status)
    app.command()(cancel)
    app.command()(delete)
    app.command()(drain)
    app.command()(wait)
