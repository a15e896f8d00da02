"""``workhive result`` (and the other commands of living graphs): thin
commands over :class:`workhive.client.Client` (docs/client.md, "Results").

Exit codes as ``projects``: 0 ok; 1 unknown task or project, or the work was
refused; 2 usage; 69 no coordinator or leader answered.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from workhive.client import TaskState, WorkhiveError
from workhive.coordinator.cli import exit_codes
from workhive.coordinator.cli.projects import (
    COORDINATORS,
    TIMEOUT,
    TLS,
    TLS_CA,
    TLS_CERT,
    TLS_KEY,
    TOKEN_FILE,
    _client,
    _sec,
    err,
    fail,
)


def result(
    project: str = typer.Argument(..., help="Project id."),
    task: str = typer.Argument(..., help="Task id."),
    coordinator: str = COORDINATORS,
    json_out: bool = typer.Option(
        False, "--json", help="Print state, result, reason and output tail as one JSON object."
    ),
    timeout: float = TIMEOUT,
    tls: bool = TLS,
    tls_ca: Path | None = TLS_CA,
    tls_cert: Path | None = TLS_CERT,
    tls_key: Path | None = TLS_KEY,
    token_file: Path | None = TOKEN_FILE,
) -> None:
    """Print the JSON result a task completed with (``null``: none yet)."""
    sec = _sec(tls, tls_ca, tls_cert, tls_key, token_file)
    with _client(coordinator, timeout, **sec) as client:
        try:
            st = client.task(project, task)
        except WorkhiveError as exc:
            raise fail(exc) from None
    if st.state is TaskState.UNKNOWN:
        err.print(f"[red]unknown task:[/red] {project}/{task}", highlight=False)
        raise typer.Exit(exit_codes.FAILED)
    if json_out:
        out = {
            "project": project,
            "task": task,
            "state": str(st.state),
            "result": st.result,
            "reason": st.reason,
            "output_tail": st.output_tail,
        }
        typer.echo(json.dumps(out))
    else:
        typer.echo(json.dumps(st.result, indent=2))


def register(app: typer.Typer) -> None:
    app.command()(result)
