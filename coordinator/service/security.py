"""Transport security of the coordinator (docs/security.md): TLS for its gRPC
server and peer channels, the plaintext health-only server, the etcd
connection with TLS/auth, and the interceptors a server is built with.

- TLS: ``server_credentials`` from ``tls_cert``/``tls_key``; with ``tls_ca``
  clients must present a certificate signed by that CA (mutual TLS) unless
  ``tls_client_auth`` is false.
- Bearer tokens and roles: ``tokens.py``; their checks: ``interceptors.py``.
- ``health_listen``: a second, plaintext server with nothing but
  ``grpc.health.v1`` (sharing the main server's health state), because the
  kubelet's native gRPC probes cannot speak TLS.
"""

from __future__ import annotations

import grpc
import structlog
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from workhive.coordinator.etcd.client import EtcdClient
from workhive.coordinator.etcd.credentials import EtcdAuth, EtcdTLS
from workhive.coordinator.service import interceptors
from workhive.coordinator.service.interceptors import AuthInterceptor, DecodeInterceptor
from workhive.coordinator.service.server import MAX_MESSAGE_BYTES
from workhive.coordinator.service.tokens import (
    ADMIN_CLIENT,
    Identity,
    SecurityError,
    TokenStore,
    parse_tokens,
    read_file,
)
from workhive.coordinator.settings import Settings, etcd_password

log = structlog.get_logger("workhive.security")

CLIENT_IDENTITY = ADMIN_CLIENT


# -- files -------------------------------------------------------------------------------


def read_token_file(path: str) -> str:
    """A client's token from a file (first line, whitespace stripped)."""
    text = read_file(path, "token_file").decode("utf-8", "replace").strip()
    token = text.splitlines()[0].strip() if text else ""
    if not token:
        raise SecurityError(f"token_file: {path} is empty")
    return token


# -- TLS ---------------------------------------------------------------------------------


def server_credentials(s: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials for the main server (``None``: plaintext)."""
    if not s.tls_cert:
        return None
    key = read_file(s.tls_key, "tls_key")
    cert = read_file(s.tls_cert, "tls_cert")
    if not s.tls_ca:
        return grpc.ssl_server_credentials([(key, cert)])
    ca = read_file(s.tls_ca, "tls_ca")
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=s.tls_client_auth
    )


def channel_credentials(
    ca: str | None = None, cert: str | None = None, key: str | None = None
) -> grpc.ChannelCredentials:
    """Client-side TLS: ``ca`` verifies the server (system roots when ``None``);
    ``cert`` and ``key`` are this client's certificate (mutual TLS)."""
    if bool(cert) != bool(key):
        raise SecurityError("tls_cert and tls_key go together")
    return grpc.ssl_channel_credentials(
        root_certificates=read_file(ca, "tls_ca") if ca else None,
        private_key=read_file(key, "tls_key") if key else None,
        certificate_chain=read_file(cert, "tls_cert") if cert else None,
    )


def peer_health_channel(s: Settings, address: str) -> grpc.aio.Channel:
    """A channel to another replica's health service (fast failover).

    Plaintext replicas: ``address``. TLS with ``health_listen``: the peer's
    plaintext health port (same port number on every replica). TLS without
    it: TLS with this replica's own certificate as client certificate, the
    CA ``tls_ca`` and, if set, ``tls_server_name`` as the expected name.
    """
    if s.tls_cert and s.health_listen:
        host = address.rpartition(":")[0]
        return grpc.aio.insecure_channel(f"{host}:{s.health_listen.rpartition(':')[2]}")
    return peer_channel(s, address)


PEER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
)
"""Like an agent's channel: the server's message limit, pings on idle streams."""


def peer_channel(s: Settings, address: str) -> grpc.aio.Channel:
    """A channel to another replica's main server (health checks, relayed
    agent sessions): plaintext when this replica serves plaintext, else TLS
    with this replica's own certificate as client certificate, the CA
    ``tls_ca`` and, if set, ``tls_server_name`` as the expected name."""
    if not s.tls_cert:
        return grpc.aio.insecure_channel(address, options=PEER_OPTIONS)
    creds = channel_credentials(s.tls_ca or None, s.tls_cert, s.tls_key)
    name = [("grpc.ssl_target_name_override", s.tls_server_name)] if s.tls_server_name else []
    return grpc.aio.secure_channel(address, creds, options=[*PEER_OPTIONS, *name])


async def build_health_server(health: HealthServicer, listen: str) -> tuple[grpc.aio.Server, int]:
    """A plaintext server with only ``grpc.health.v1`` (shared state), started."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen} (health_listen)")
    await server.start()
    return server, port


# -- etcd ----------------------------------------------------------------------------------


def connect_etcd(s: Settings) -> EtcdClient:
    """The coordinator's etcd client: TLS for https:// endpoints, user auth."""
    tls = None
    if any(e.startswith("https://") for e in s.etcd):
        tls = EtcdTLS(
            ca=read_file(s.etcd_cacert, "etcd_cacert") if s.etcd_cacert else None,
            cert=read_file(s.etcd_cert, "etcd_cert") if s.etcd_cert else None,
            key=read_file(s.etcd_key, "etcd_key") if s.etcd_key else None,
        )
    auth = EtcdAuth(s.etcd_user, etcd_password(s)) if s.etcd_user else None
    return EtcdClient(
        list(s.etcd),
        timeout=s.etcd_timeout,
        tls=tls,
        auth=auth,
        revision_key=s.prefix.encode(),
    )


def server_interceptors(s: Settings) -> list[grpc.aio.ServerInterceptor]:
    """The interceptors of the main server (see ``interceptors.py``)."""
    return interceptors.server_interceptors(s.auth_tokens_file)


__all__ = [
    "CLIENT_IDENTITY",
    "AuthInterceptor",
    "DecodeInterceptor",
    "Identity",
    "SecurityError",
    "TokenStore",
    "build_health_server",
    "channel_credentials",
    "connect_etcd",
    "parse_tokens",
    "peer_channel",
    "peer_health_channel",
    "read_token_file",
    "server_credentials",
    "server_interceptors",
]
