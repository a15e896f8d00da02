"""``workhive coordinator``: run one coordinator replica until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import structlog
import typer

from workhive.coordinator.cli import exit_codes
from workhive.coordinator.etcd import EtcdError
from workhive.coordinator.gc_pauses import FreezeAfterFull
from workhive.coordinator.logs import configure_logging
from workhive.coordinator.service.security import SecurityError
from workhive.coordinator.settings import SettingsError, load_settings


def coordinator(
    etcd: str | None = typer.Option(None, help="Comma-separated etcd URLs [env WORKHIVE_ETCD]."),
    listen: str | None = typer.Option(None, help="gRPC listen address host:port."),
    advertise: str | None = typer.Option(None, help="Address agents and peers dial (host:port)."),
    coordinator_id: str | None = typer.Option(
        None, "--id", help="Candidate id (default host-pid)."
    ),
    prefix: str | None = typer.Option(None, help="etcd key prefix (default /workhive/)."),
    metrics_port: int | None = typer.Option(None, help="Prometheus metrics HTTP port (0: off)."),
    dashboard_port: int | None = typer.Option(
        None, help="Web dashboard HTTP port (0: off) [env WORKHIVE_DASHBOARD_PORT]."
    ),
    dashboard_listen: str | None = typer.Option(
        None, help="Address the dashboard binds (default 127.0.0.1)."
    ),
    dashboard_peers: str | None = typer.Option(
        None, help="Other replicas' dashboard URLs (comma-separated): the page moves there."
    ),
    election_ttl: int | None = typer.Option(None, help="Leader lease TTL, seconds (>= 2)."),
    fast_failover: bool | None = typer.Option(
        None, "--fast-failover/--no-fast-failover", help="Revoke a dead leader's lease at once."
    ),
    warm_standby: bool | None = typer.Option(
        None,
        "--warm-standby/--no-warm-standby",
        help="As a follower, keep the cluster mirror current so a takeover skips the re-read.",
    ),
    config: Path | None = typer.Option(
        None, help="Settings file (YAML/JSON) [env WORKHIVE_CONFIG]."
    ),
    log_format: str | None = typer.Option(None, help="auto, console or json."),
    tls_cert: Path | None = typer.Option(None, help="Server certificate (PEM): gRPC over TLS."),
    tls_key: Path | None = typer.Option(None, help="Server private key (PEM)."),
    tls_ca: Path | None = typer.Option(
        None, help="CA (PEM) that signs client certificates: clients must present one (mTLS)."
    ),
    tls_client_auth: bool | None = typer.Option(
        None,
        "--tls-client-auth/--no-tls-client-auth",
        help="With --tls-ca: require client certificates (default) or only trust the CA.",
    ),
    tls_server_name: str | None = typer.Option(
        None, help="Name expected in peers' certificates when dialing them (fast failover)."
    ),
    auth_tokens_file: Path | None = typer.Option(
        None, help="Per-agent bearer tokens (see docs/security.md) [env WORKHIVE_AUTH_TOKENS_FILE]."
    ),
    retention: float | None = typer.Option(
        None,
        "--retention",
        help="Delete projects this many seconds after they finished (0: keep) "
        "[env WORKHIVE_RETENTION_SECONDS].",
    ),
    insecure_listen_anywhere: bool | None = typer.Option(
        None,
        "--insecure-listen-anywhere",
        help="Allow a non-loopback --listen without auth_tokens_file (open APIs).",
    ),
    health_listen: str | None = typer.Option(
        None, help="Plaintext grpc.health.v1-only address for kubelet probes (empty: off)."
    ),
    etcd_cacert: Path | None = typer.Option(None, help="CA of etcd's server certificate (https)."),
    etcd_cert: Path | None = typer.Option(None, help="Client certificate for etcd (PEM)."),
    etcd_key: Path | None = typer.Option(None, help="Client key for etcd (PEM)."),
    etcd_user: str | None = typer.Option(None, help="etcd user (etcd authentication)."),
    etcd_password_file: Path | None = typer.Option(
        None,
        help="File holding the etcd password (or env WORKHIVE_ETCD_PASSWORD; never a flag).",
    ),
) -> None:
    """Run a coordinator replica: serve agents and clients, campaign, lead when elected."""
    flags = {
        "etcd": etcd,
        "listen": listen,
        "advertise": advertise,
        "coordinator_id": coordinator_id,
        "prefix": prefix,
        "metrics_port": metrics_port,
        "dashboard_port": dashboard_port,
        "dashboard_listen": dashboard_listen,
        "dashboard_peers": dashboard_peers,
        "election_ttl": election_ttl,
        "fast_failover": fast_failover,
        "warm_standby": warm_standby,
        "log_format": log_format,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "tls_ca": tls_ca,
        "tls_client_auth": tls_client_auth,
        "tls_server_name": tls_server_name,
        "auth_tokens_file": auth_tokens_file,
        "health_listen": health_listen,
        "insecure_listen_anywhere": insecure_listen_anywhere,
        "retention_seconds": retention,
        "etcd_cacert": etcd_cacert,
        "etcd_cert": etcd_cert,
        "etcd_key": etcd_key,
        "etcd_user": etcd_user,
        "etcd_password_file": etcd_password_file,
    }
    flags = {k: str(v) if isinstance(v, Path) else v for k, v in flags.items()}
    try:
        settings = load_settings(flags, config_file=config)
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exit_codes.USAGE) from None
    configure_logging(settings.log_format, settings.log_level)
    if not settings.auth_tokens_file:
        structlog.get_logger("workhive.security").warning(
            "no auth_tokens_file: anyone who reaches the listen address may submit, cancel "
            "and act as any agent",
            listen=settings.listen,
        )
    from workhive.coordinator.node import CoordinatorNode

    node = CoordinatorNode(settings)
    gc_policy = FreezeAfterFull(node.metrics.gc_pauses, freeze=settings.gc_freeze)
    gc_policy.install()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if not settings.dashboard_port:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, node.stop)
            await node.run()
            return
        # the dashboard sits beside the node, in its loop (docs/dashboard.md)
        from workhive.coordinator.dashboard import Dashboard

        dashboard = Dashboard(node)
        stopping: set[asyncio.Task[None]] = set()

        def stop() -> None:  # the dashboard goes first: no page reads a closing node
            node.stop()
            task = loop.create_task(dashboard.stop())
            stopping.add(task)
            task.add_done_callback(stopping.discard)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        ready = asyncio.Event()
        running = asyncio.create_task(node.run(ready))
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait([running, waiting], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if ready.is_set():
            await dashboard.start()
        try:
            await running
        finally:
            await dashboard.stop()

    try:
        asyncio.run(main())
    except (SecurityError, SettingsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exit_codes.USAGE) from None
    except (EtcdError, TimeoutError) as exc:
        typer.echo(f"error: {exc or type(exc).__name__}", err=True)  # one line, no dump
        raise typer.Exit(exit_codes.UNAVAILABLE) from None
    except OSError as exc:
        structlog.get_logger().error("cannot serve", error=str(exc))
        raise typer.Exit(exit_codes.UNAVAILABLE) from None
    finally:
        gc_policy.uninstall()


def register(app: typer.Typer) -> None:
    app.command()(coordinator)
