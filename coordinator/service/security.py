"""Transport security and authentication of the coordinator's gRPC services.

- TLS: ``server_credentials`` from ``tls_cert``/``tls_key``; with ``tls_ca``
  clients must present a certificate signed by that CA (mutual TLS) unless
  ``tls_client_auth`` is false.
- Bearer tokens (``auth_tokens_file``): every call to ``AgentService`` or
  ``ClientService`` needs ``authorization: Bearer <token>``. A token is bound
  to one identity: an agent id, or ``*client*`` for the client API (submit,
  status, cancel). No or an unknown token: ``UNAUTHENTICATED``. A known token
  used for something its identity may not do (another agent id in the
  ``workhive-agent-id`` metadata, the ``Hello`` or a ``Heartbeat``; an agent
  token on the client API, or the reverse): ``PERMISSION_DENIED``.
  ``grpc.health.v1`` and reflection stay open so probes work.
- ``health_listen``: a second, plaintext server with nothing but
  ``grpc.health.v1`` (sharing the main server's health state), because the
  kubelet's native gRPC probes cannot speak TLS.

Tokens file (``auth_tokens_file``; re-read when it changes, e.g. a rotated
Kubernetes Secret), either a YAML/JSON mapping of identity to token (or a
list of tokens, for rotation)::

    agent-1: 9c1f...        # the agent with id agent-1
    agent-2: [old..., new...]
    "*client*": 77ab...     # workhive submit / status / cancel

or plain lines ``identity:token`` (``#`` starts a comment). Tokens are kept
only as SHA-256 digests and never logged.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeAlias

import grpc
import structlog
import yaml
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from workhive.coordinator.etcd.client import EtcdAuth, EtcdClient, EtcdTLS
from workhive.coordinator.service.errors import error_status
from workhive.coordinator.service.server import AGENT_SERVICE, CLIENT_SERVICE
from workhive.coordinator.settings import Settings, etcd_password
from workhive.v1 import agent_pb2

log = structlog.get_logger("workhive.security")

CLIENT_IDENTITY = "*client*"
AGENT_ID_METADATA = "workhive-agent-id"
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
MAX_TOKEN_FILE = 4 * 1024 * 1024
RELOAD_EVERY = 2.0  # seconds between checks of the tokens file's mtime


class SecurityError(ValueError):
    """Unusable security material (a file missing or malformed); names the setting."""


# -- files -------------------------------------------------------------------------------


def read_file(path: str, setting: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SecurityError(f"{setting}: cannot read {path}: {exc.strerror}") from None


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
    if not s.tls_cert:
        return grpc.aio.insecure_channel(address)
    if s.health_listen:
        host = address.rpartition(":")[0]
        return grpc.aio.insecure_channel(f"{host}:{s.health_listen.rpartition(':')[2]}")
    creds = channel_credentials(s.tls_ca or None, s.tls_cert, s.tls_key)
    options = [("grpc.ssl_target_name_override", s.tls_server_name)] if s.tls_server_name else []
    return grpc.aio.secure_channel(address, creds, options=options)


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


# -- tokens ------------------------------------------------------------------------------


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_tokens(text: str, source: str = "auth_tokens_file") -> dict[bytes, str]:
    """Token digests to identities, from a tokens file's text (see module doc)."""
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    pairs: list[tuple[str, str]] = []
    if lines and all(":" in ln and " " not in ln and "\t" not in ln for ln in lines):
        for ln in lines:
            ident, _, token = ln.partition(":")
            pairs.append((ident, token))
    else:
        try:
            data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError):
            raise SecurityError(f"{source}: neither YAML/JSON nor identity:token lines") from None
        if not isinstance(data, dict):
            raise SecurityError(f"{source}: expected a mapping of identity to token")
        for ident, tokens in data.items():
            items = tokens if isinstance(tokens, list) else [tokens]
            for token in items:
                if not isinstance(token, str):
                    raise SecurityError(f"{source}: the token of {ident!r} must be a string")
                pairs.append((str(ident), token))
    out: dict[bytes, str] = {}
    for ident, token in pairs:
        if not ident or len(token) < 16:
            raise SecurityError(
                f"{source}: identity {ident!r}: tokens must be at least 16 characters"
            )
        d = _digest(token)
        if d in out and out[d] != ident:
            raise SecurityError(f"{source}: one token is given to two identities")
        out[d] = ident
    return out


class TokenStore:
    """The tokens of ``auth_tokens_file``, re-read when the file changes."""

    def __init__(self, path: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._mtime = 0.0
        self._checked = 0.0
        self._tokens: dict[bytes, str] = {}
        self._load(initial=True)

    def _load(self, *, initial: bool = False) -> None:
        try:
            st = os.stat(self.path)
            if st.st_size > MAX_TOKEN_FILE:
                raise SecurityError(f"auth_tokens_file: {self.path} is larger than 4 MiB")
            tokens = parse_tokens(read_file(self.path, "auth_tokens_file").decode("utf-8"))
        except (OSError, SecurityError, UnicodeDecodeError) as exc:
            if initial:
                raise SecurityError(str(exc)) from None
            log.warning("tokens file not reloaded: keeping the previous tokens", error=str(exc))
            return
        self._tokens, self._mtime = tokens, st.st_mtime
        if not initial:
            log.info("tokens file reloaded", identities=len(set(tokens.values())))

    def identity(self, token: str) -> str | None:
        """Who ``token`` belongs to (``None``: unknown)."""
        now = self._clock()
        with self._lock:
            if now - self._checked >= RELOAD_EVERY:
                self._checked = now
                try:
                    changed = os.stat(self.path).st_mtime != self._mtime
                except OSError:
                    changed = False
                if changed:
                    self._load()
            return self._tokens.get(_digest(token))


# -- the interceptor ---------------------------------------------------------------------

Ctx: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def _denied(code: grpc.StatusCode, message: str) -> grpc.Status:
    return error_status(code, "UNAUTHENTICATED_AGENT", message)


def _bearer(metadata: Mapping[str, str | bytes]) -> str:
    value = metadata.get("authorization", "")
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _with_behavior(
    handler: Handler, wrap: Callable[[Any], Any], *, deserialize: bool = True
) -> Handler:
    """The same handler with its behavior wrapped (and, unless ``deserialize``
    is false, the same request deserializer)."""
    de = handler.request_deserializer if deserialize else None
    ser = handler.response_serializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary), de, ser)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream), de, ser)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary), de, ser)
    return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream), de, ser)


# -- strict decoding ----------------------------------------------------------------------


async def _decode(deserializer: Callable[[bytes], Any], raw: Any, context: Ctx) -> Any:
    try:
        return deserializer(raw)
    except Exception:  # DecodeError, or anything a malformed message makes the parser raise
        await context.abort_with_status(
            error_status(
                grpc.StatusCode.INVALID_ARGUMENT,
                "PROTOCOL_VIOLATION",
                f"malformed request message ({len(raw)} bytes)",
            )
        )


class DecodeInterceptor(grpc.aio.ServerInterceptor):
    """Undecodable requests end with ``INVALID_ARGUMENT`` (grpc.aio itself
    answers ``UNKNOWN`` and logs a traceback per message)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        de = handler.request_deserializer
        ser = handler.response_serializer
        if handler.unary_unary is not None:
            inner_uu: Any = handler.unary_unary

            async def uu(raw: Any, context: Ctx) -> Any:
                return await inner_uu(await _decode(de, raw, context), context)

            return grpc.unary_unary_rpc_method_handler(uu, None, ser)
        if handler.unary_stream is not None:
            inner_us: Any = handler.unary_stream
            if not inspect.isasyncgenfunction(inner_us):  # writes with context.write

                async def us_writer(raw: Any, context: Ctx) -> None:
                    await inner_us(await _decode(de, raw, context), context)

                return grpc.unary_stream_rpc_method_handler(us_writer, None, ser)

            async def us(raw: Any, context: Ctx) -> AsyncIterator[Any]:
                async for reply in inner_us(await _decode(de, raw, context), context):
                    yield reply

            return grpc.unary_stream_rpc_method_handler(us, None, ser)

        async def decoded(requests: AsyncIterator[Any], context: Ctx) -> AsyncIterator[Any]:
            async for raw in requests:
                yield await _decode(de, raw, context)

        if handler.stream_unary is not None:
            inner_su: Any = handler.stream_unary

            async def su(requests: AsyncIterator[Any], context: Ctx) -> Any:
                return await inner_su(decoded(requests, context), context)

            return grpc.stream_unary_rpc_method_handler(su, None, ser)
        inner_ss: Any = handler.stream_stream
        if not inspect.isasyncgenfunction(inner_ss):

            async def ss_writer(requests: AsyncIterator[Any], context: Ctx) -> None:
                await inner_ss(decoded(requests, context), context)

            return grpc.stream_stream_rpc_method_handler(ss_writer, None, ser)

        async def ss(requests: AsyncIterator[Any], context: Ctx) -> AsyncIterator[Any]:
            async for reply in inner_ss(decoded(requests, context), context):
                yield reply

        return grpc.stream_stream_rpc_method_handler(ss, None, ser)


def _refuse(handler: Handler, status: grpc.Status) -> Handler:
    """A handler of the same kind that only aborts with ``status`` (requests
    stay undecoded bytes: a refused caller learns nothing about its input)."""

    def wrap(_: Any) -> Any:
        if handler.unary_stream is not None or handler.stream_stream is not None:

            async def stream(request: Any, context: Ctx) -> AsyncIterator[Any]:
                if status.code is not grpc.StatusCode.OK:
                    await context.abort_with_status(status)
                nothing: tuple[Any, ...] = ()  # an async generator that yields nothing
                for reply in nothing:
                    yield reply

            return stream

        async def unary(request: Any, context: Ctx) -> Any:
            await context.abort_with_status(status)

        return unary

    return _with_behavior(handler, wrap, deserialize=False)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks bearer tokens and binds each agent token to its agent id."""

    def __init__(self, tokens: TokenStore) -> None:
        self.tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        service = method[1:].partition("/")[0]
        metadata = dict(handler_call_details.invocation_metadata or ())
        token = _bearer(metadata)
        who = self.tokens.identity(token) if token else None
        if who is None:
            why = "an unknown bearer token" if token else "no bearer token"
            log.warning("call refused", method=method, why=why)
            return _refuse(handler, _denied(grpc.StatusCode.UNAUTHENTICATED, f"{method}: {why}"))
        if service == CLIENT_SERVICE:
            if who != CLIENT_IDENTITY:
                return _refuse(
                    handler,
                    _denied(
                        grpc.StatusCode.PERMISSION_DENIED,
                        "an agent token cannot use the client API",
                    ),
                )
            return handler
        if service != AGENT_SERVICE:
            return handler
        if who == CLIENT_IDENTITY:
            return _refuse(
                handler,
                _denied(grpc.StatusCode.PERMISSION_DENIED, "a client token cannot act as an agent"),
            )
        claimed = metadata.get(AGENT_ID_METADATA)
        if isinstance(claimed, bytes):
            claimed = claimed.decode("latin-1")
        if claimed is not None and claimed != who:
            log.warning("agent id mismatch", method=method, token_agent=who, claimed=claimed)
            return _refuse(handler, _not_yours(who, claimed))
        if method.endswith("/Session"):
            return _with_behavior(handler, lambda b: _checked_session(b, who))
        if method.endswith("/Heartbeat"):
            return _with_behavior(handler, lambda b: _checked_heartbeat(b, who))
        return handler


def _not_yours(who: str, claimed: str) -> grpc.Status:
    return _denied(
        grpc.StatusCode.PERMISSION_DENIED,
        f"this token belongs to agent {who!r}, not {claimed!r}",
    )


def _checked_session(behavior: Any, who: str) -> Any:
    async def session(requests: AsyncIterator[Any], context: Ctx) -> AsyncIterator[Any]:
        async def checked() -> AsyncIterator[Any]:
            async for msg in requests:
                if (
                    isinstance(msg, agent_pb2.AgentMessage)
                    and msg.WhichOneof("kind") == "hello"
                    and msg.hello.agent_id != who
                ):
                    log.warning("agent id mismatch", token_agent=who, claimed=msg.hello.agent_id)
                    await context.abort_with_status(_not_yours(who, msg.hello.agent_id))
                yield msg

        async for reply in behavior(checked(), context):
            yield reply

    return session


def _checked_heartbeat(behavior: Any, who: str) -> Any:
    async def heartbeat(request: Any, context: Ctx) -> Any:
        if isinstance(request, agent_pb2.HeartbeatRequest) and request.agent_id != who:
            await context.abort_with_status(_not_yours(who, request.agent_id))
        return await behavior(request, context)

    return heartbeat


def server_interceptors(s: Settings) -> list[grpc.aio.ServerInterceptor]:
    """Strict decoding, then token checks when ``auth_tokens_file`` is set.

    The first interceptor wraps the handlers the next one returns: decoding
    comes first, so the token checks see decoded messages (a refused call
    is never decoded at all)."""
    out: list[grpc.aio.ServerInterceptor] = [DecodeInterceptor()]
    if s.auth_tokens_file:
        out.append(AuthInterceptor(TokenStore(s.auth_tokens_file)))
    return out


__all__ = [
    "CLIENT_IDENTITY",
    "AuthInterceptor",
    "DecodeInterceptor",
    "SecurityError",
    "TokenStore",
    "build_health_server",
    "channel_credentials",
    "connect_etcd",
    "parse_tokens",
    "peer_health_channel",
    "read_token_file",
    "server_credentials",
    "server_interceptors",
]
