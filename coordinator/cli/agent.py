"""``workhive agent``: run a program per task for the coordinators.

Usage::

    workhive agent --coordinator 10.0.0.1:50051,10.0.0.2:50051 --exec "make -C /src task"

Every flag also reads an environment variable (``WORKHIVE_COORDINATOR``,
``WORKHIVE_EXEC``, ``WORKHIVE_AGENT_ID``, ``WORKHIVE_CAPABILITIES``,
``WORKHIVE_SLOTS``, ``WORKHIVE_PREFETCH``, ...); flags win. SIGTERM and
SIGINT drain: the queue goes back to the coordinator, running tasks finish
and are reported, then the process exits 0. A second signal stops at once
(running subprocesses are killed; their claims expire with the lease).

Exit codes: 0 after a clean drain; 2 on usage errors; 69 (EX_UNAVAILABLE)
when no coordinator welcomed the agent for ``--unreachable-timeout`` seconds.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

import grpc
import typer

from workhive.coordinator.cli import exit_codes


def client_security(
    tls: bool,
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    token: str | None,
    token_file: Path | None,
) -> tuple[grpc.ChannelCredentials | None, str | None]:
    """Channel credentials and bearer token from the CLI's TLS and token options."""
    from workhive.client import CredentialsError, channel_credentials, read_token_file

    if token and token_file:
        raise typer.BadParameter("give --token or --token-file, not both", param_hint="--token")
    if bool(cert) != bool(key):
        raise typer.BadParameter("--tls-cert and --tls-key go together", param_hint="--tls-cert")
    try:
        if token_file:
            token = read_token_file(token_file)
        creds = None
        if tls or ca or cert:
            creds = channel_credentials(ca, cert, key)
    except CredentialsError as exc:
        raise typer.BadParameter(exc.args[0]) from None
    return creds, token or None


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for raw in values or [] for v in raw.split(",") if v.strip()]


def agent_command(
    coordinator: list[str] = typer.Option(
        ...,
        "--coordinator",
        "-c",
        envvar="WORKHIVE_COORDINATOR",
        help="Coordinator address host:port; comma separated or repeated. Any replica will do.",
    ),
    exec_cmd: str = typer.Option(
        ...,
        "--exec",
        envvar="WORKHIVE_EXEC",
        help="Command run per task (split like a shell would, no shell unless --shell). "
        "Env: WORKHIVE_TASK_ID, WORKHIVE_PROJECT_ID, WORKHIVE_PAYLOAD (JSON), "
        "WORKHIVE_ATTEMPT. Exit code 0 = success.",
    ),
    agent_id: str | None = typer.Option(
        None, "--id", envvar="WORKHIVE_AGENT_ID", help="Agent id (default: hostname-random)."
    ),
    capabilities: list[str] | None = typer.Option(
        None,
        "--capabilities",
        envvar="WORKHIVE_CAPABILITIES",
        help="Capabilities, comma separated or repeated.",
    ),
    slots: int = typer.Option(
        1, "--slots", min=1, envvar="WORKHIVE_SLOTS", help="Tasks run at the same time."
    ),
    prefetch: int = typer.Option(
        1, "--prefetch", min=0, envvar="WORKHIVE_PREFETCH", help="Queued tasks to hold."
    ),
    shell: bool = typer.Option(
        False, "--shell", envvar="WORKHIVE_EXEC_SHELL", help="Run the command with sh -c."
    ),
    task_timeout: float | None = typer.Option(
        None,
        "--task-timeout",
        min=0.001,
        envvar="WORKHIVE_TASK_TIMEOUT",
        help="Kill a task's process group after this many seconds (a retryable failure).",
    ),
    unreachable_timeout: float = typer.Option(
        60.0,
        "--unreachable-timeout",
        min=0.0,
        envvar="WORKHIVE_UNREACHABLE_TIMEOUT",
        help="Exit 69 when no coordinator answered for this many seconds (0 = retry forever).",
    ),
    drain_timeout: float = typer.Option(
        10.0,
        "--drain-timeout",
        min=0.0,
        envvar="WORKHIVE_DRAIN_TIMEOUT",
        help="On drain, how long to wait for the coordinator's acks once nothing runs.",
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="WORKHIVE_AGENT_TOKEN",
        help="Bearer token for the coordinators (prefer --token-file: flags show in ps).",
    ),
    token_file: Path | None = typer.Option(
        None,
        "--token-file",
        envvar="WORKHIVE_AGENT_TOKEN_FILE",
        help="File holding the bearer token (first line).",
    ),
    tls: bool = typer.Option(
        False,
        "--tls",
        envvar="WORKHIVE_AGENT_TLS",
        help="Dial the coordinators over TLS (implied by --tls-ca/--tls-cert).",
    ),
    tls_ca: Path | None = typer.Option(
        None,
        "--tls-ca",
        envvar="WORKHIVE_TLS_CA",
        help="CA (PEM) that signed the coordinators' certificate (default: system roots).",
    ),
    tls_cert: Path | None = typer.Option(
        None,
        "--tls-cert",
        envvar="WORKHIVE_AGENT_TLS_CERT",
        help="This agent's client certificate (PEM), for mutual TLS.",
    ),
    tls_key: Path | None = typer.Option(
        None,
        "--tls-key",
        envvar="WORKHIVE_AGENT_TLS_KEY",
        help="This agent's client key (PEM), for mutual TLS.",
    ),
    pull: bool = typer.Option(
        False, "--pull", help="Pull mode: ask for a task whenever a slot is free (no prefetch)."
    ),
    json_logs: bool = typer.Option(False, "--json-logs", help="Log JSON lines to stderr."),
    log_level: str = typer.Option("info", "--log-level", envvar="WORKHIVE_LOG_LEVEL"),
) -> None:
    """Run tasks from the coordinators: one subprocess per task."""
    from workhive.agent import Agent, CoordinatorUnavailable, CredentialsRefused, ExecHandler
    from workhive.coordinator.logs import configure_logging

    addresses = _split(coordinator)
    if not addresses:
        raise typer.BadParameter("no coordinator address", param_hint="--coordinator")
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter("debug, info, warning or error", param_hint="--log-level")
    try:
        handler = ExecHandler(exec_cmd, shell=shell, timeout=task_timeout)
    except ValueError as exc:  # empty command, unbalanced quotes
        raise typer.BadParameter(str(exc), param_hint="--exec") from exc
    credentials, token = client_security(tls, tls_ca, tls_cert, tls_key, token, token_file)
    configure_logging("json" if json_logs else "auto", log_level.lower())
    from workhive.agent._pull import PullingAgent

    agent = (PullingAgent if pull else Agent)(
        addresses,
        agent_id=agent_id or None,
        capabilities=_split(capabilities),
        slots=slots,
        prefetch=prefetch,
        token=token,
        credentials=credentials,
        unreachable_timeout=unreachable_timeout or None,
        drain_timeout=drain_timeout,
    )
    signals = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            agent.drain()  # only sets a flag: safe in a signal handler
        else:
            agent.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        agent.run(handler)
    except CoordinatorUnavailable as exc:
        typer.echo(f"workhive agent: {exc}", err=True)
        raise typer.Exit(exit_codes.UNAVAILABLE) from exc
    except CredentialsRefused as exc:
        typer.echo(f"workhive agent: {exc}", err=True)
        raise typer.Exit(exit_codes.NOPERM) from exc
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    raise typer.Exit(exit_codes.OK)


def register(app: typer.Typer) -> None:
    """Add the ``agent`` command to ``app``."""
    app.command("agent")(agent_command)
