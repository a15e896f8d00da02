"""``workhive result`` (and the other commands of living graphs): thin
commands over :class:`workhive.client.Client` (docs/client.md, "Results").

Exit codes as ``projects``: 0 ok; 1 unknown task or project, or the work was
refused; 2 usage; 69 no coordinator or leader answered.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
import yaml

from workhive.client import RetryBackoff, Task, TaskState
from workhive.coordinator.cli import exit_codes
from workhive.coordinator.cli.projects import (
    COORDINATORS,
    TIMEOUT,
    TLS,
    TLS_CA,
    TLS_CERT,
    TLS_KEY,
    TOKEN_FILE,
    _sec,
    call,
    err,
)
from workhive.coordinator.task_schema import ProjectError, task_from_dict


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
    st = call(lambda c: c.task(project, task), coordinator, timeout, sec)
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
            "attempt": st.attempt,
            "deadline_at": st.deadline_at or None,
            "retry_at": st.retry_at or None,
            "last_failure": st.last_failure,
            "progress": st.progress,
            "progress_note": st.progress_note,
        }
        typer.echo(json.dumps(out))
    else:
        typer.echo(json.dumps(st.result, indent=2))


def read_tasks(path: Path) -> list[Task]:
    """The tasks of an ``add`` file (YAML or JSON: a list of tasks, or a
    mapping with a ``tasks`` list), each checked on its own; ``blocks`` kept."""
    src = str(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ProjectError(f"cannot read tasks: {exc}", file=src) from None
    raw = data.get("tasks") if isinstance(data, dict) else data
    if not isinstance(raw, list) or not raw:
        raise ProjectError("must be a non-empty list of tasks", file=src, field="tasks")
    return [to_client_task(t, i, src) for i, t in enumerate(raw)]


def to_client_task(raw: Any, index: int, source: str) -> Task:
    """One task dict (with an optional ``blocks`` list) as a client ``Task``."""
    raw = dict(raw) if isinstance(raw, dict) else raw
    blocks = raw.pop("blocks", ()) if isinstance(raw, dict) else ()
    spec = task_from_dict(raw, index, source)
    if isinstance(blocks, str):
        blocks = [blocks]
    if not isinstance(blocks, list | tuple) or not all(isinstance(b, str) for b in blocks):
        raise ProjectError("must be a list of task ids", file=source, task=spec.id, field="blocks")
    return Task(
        id=spec.id,
        depends_on=spec.depends_on,
        priority=spec.priority,
        estimate=spec.estimate,
        kind=spec.kind,
        branch=spec.branch,
        requires=spec.requires,
        payload=spec.payload,
        max_attempts=spec.max_attempts,
        blocks=tuple(blocks),
        timeout=spec.timeout,
        retry_backoff=None
        if spec.retry_backoff is None
        else RetryBackoff(spec.retry_backoff.base, spec.retry_backoff.cap),
    )


def add(
    project: str = typer.Argument(..., help="Project id (running, or finished: it reopens)."),
    file: Path = typer.Argument(..., help="Tasks to add (YAML or JSON list, or {tasks: [...]})."),
    coordinator: str = COORDINATORS,
    json_out: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
    timeout: float = TIMEOUT,
    tls: bool = TLS,
    tls_ca: Path | None = TLS_CA,
    tls_cert: Path | None = TLS_CERT,
    tls_key: Path | None = TLS_KEY,
    token_file: Path | None = TOKEN_FILE,
) -> None:
    """Add tasks to a running project in one transaction (all or nothing)."""
    try:
        tasks = read_tasks(file)
    except ProjectError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(exit_codes.FAILED) from None
    sec = _sec(tls, tls_ca, tls_cert, tls_key, token_file)
    added = call(lambda c: c.add_tasks(project, tasks), coordinator, timeout, sec)
    if json_out:
        typer.echo(json.dumps(asdict(added)))
    else:
        err.print(f"added {added.added} tasks to {project} ({added.task_count} now)")


def register(app: typer.Typer) -> None:
    from workhive.coordinator.mcp_agent.command import mcp

    app.command()(result)
    app.command()(add)
    app.command()(mcp)
