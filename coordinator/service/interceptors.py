"""Server interceptors of the coordinator's gRPC services (docs/security.md).

- ``DecodeInterceptor``: a request that does not decode ends with
  ``INVALID_ARGUMENT`` / ``PROTOCOL_VIOLATION`` (grpc.aio itself answers
  ``UNKNOWN`` and logs a traceback per message).
- ``AuthInterceptor`` (``auth_tokens_file`` set): every call to
  ``AgentService`` or ``ClientService`` needs ``authorization: Bearer
  <token>``. No or an unknown token: ``UNAUTHENTICATED``. A known token used
  for something its identity may not do: ``PERMISSION_DENIED`` (another agent
  id in the ``workhive-agent-id`` metadata, the ``Hello`` or a ``Heartbeat``;
  an agent token on the client API or the reverse; a client call above the
  client's role; a project outside the client's prefix). A client limited to
  a prefix sees only its projects in ``GetStatus``. ``grpc.health.v1`` and
  reflection stay open so probes work.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeAlias

import grpc
import structlog

from workhive.coordinator.service.errors import error_status
from workhive.coordinator.service.server import AGENT_SERVICE, CLIENT_SERVICE
from workhive.coordinator.service.tokens import Identity, TokenStore
from workhive.v1 import agent_pb2, client_pb2

log = structlog.get_logger("workhive.security")

AGENT_ID_METADATA = "workhive-agent-id"
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
CLIENT_ROLES = {
    "GetStatus": "read",
    "GetTask": "read",
    "WatchProject": "read",
    "SubmitProject": "submit",
}
"""The role each client RPC needs; any other (cancel, delete, ...) needs admin."""

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
    """Checks bearer tokens: binds each agent token to its agent id, and each
    client token to its role and project prefix."""

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
        service, _, rpc = method[1:].partition("/")
        metadata = dict(handler_call_details.invocation_metadata or ())
        token = _bearer(metadata)
        who = self.tokens.identity(token) if token else None
        if who is None:
            why = "an unknown bearer token" if token else "no bearer token"
            log.warning("call refused", method=method, why=why)
            return _refuse(handler, _denied(grpc.StatusCode.UNAUTHENTICATED, f"{method}: {why}"))
        if service == CLIENT_SERVICE:
            return _client_call(handler, who, rpc)
        if service != AGENT_SERVICE:
            return handler
        if not who.agent:
            return _refuse(
                handler,
                _denied(grpc.StatusCode.PERMISSION_DENIED, "a client token cannot act as an agent"),
            )
        claimed = metadata.get(AGENT_ID_METADATA)
        if isinstance(claimed, bytes):
            claimed = claimed.decode("latin-1")
        if claimed is not None and not who.is_agent(claimed):
            log.warning("agent id mismatch", method=method, token_agent=who.name, claimed=claimed)
            return _refuse(handler, _not_yours(who.name, claimed))
        if method.endswith("/Session"):
            return _with_behavior(handler, lambda b: _checked_session(b, who))
        if method.endswith("/Heartbeat"):
            return _with_behavior(handler, lambda b: _checked_heartbeat(b, who))
        return handler


def _client_call(handler: Handler, who: Identity, rpc: str) -> Handler:
    """A client call: its role must allow ``rpc``; a prefix scopes its projects."""
    if who.agent:
        return _refuse(
            handler,
            _denied(grpc.StatusCode.PERMISSION_DENIED, "an agent token cannot use the client API"),
        )
    need = CLIENT_ROLES.get(rpc, "admin")
    if not who.may(need):
        log.warning("client call above its role", client=who.name, rpc=rpc, role=who.role)
        return _refuse(
            handler,
            _denied(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{rpc} needs role {need!r}; client {who.name!r} has role {who.role!r}",
            ),
        )
    if not who.projects:
        return handler
    if handler.unary_stream is not None:
        return _with_behavior(handler, lambda b: _scoped_stream(b, who))
    return _with_behavior(handler, lambda b: _scoped_unary(b, who))


def _project_of(request: Any) -> str:
    if isinstance(request, client_pb2.SubmitProjectRequest):
        return request.project.project_id
    return str(getattr(request, "project_id", ""))


def _outside(who: Identity, pid: str) -> grpc.Status:
    return _denied(
        grpc.StatusCode.PERMISSION_DENIED,
        f"client {who.name!r} may only use projects starting with {who.projects!r}"
        f" (got {pid[:80]!r})",
    )


def _scoped_unary(behavior: Any, who: Identity) -> Any:
    async def scoped(request: Any, context: Ctx) -> Any:
        pid = _project_of(request)
        if pid and not who.sees(pid):
            await context.abort_with_status(_outside(who, pid))
        if not pid and isinstance(request, client_pb2.GetStatusRequest):
            resp = await behavior(request, context)
            mine = client_pb2.GetStatusResponse()
            mine.CopyFrom(resp)  # answers may be cached and shared: never edit them
            del mine.projects[:]
            mine.projects.extend(p for p in resp.projects if who.sees(p.project_id))
            return mine
        if not pid:
            await context.abort_with_status(_outside(who, pid))
        return await behavior(request, context)

    return scoped


def _scoped_stream(behavior: Any, who: Identity) -> Any:
    async def scoped(request: Any, context: Ctx) -> AsyncIterator[Any]:
        pid = _project_of(request)
        if not who.sees(pid) or not pid:
            await context.abort_with_status(_outside(who, pid))
        async for reply in behavior(request, context):
            yield reply

    return scoped


def _not_yours(who: str, claimed: str) -> grpc.Status:
    return _denied(
        grpc.StatusCode.PERMISSION_DENIED,
        f"this token belongs to agent {who!r}, not {claimed!r}",
    )


def _checked_session(behavior: Any, who: Identity) -> Any:
    async def session(requests: AsyncIterator[Any], context: Ctx) -> AsyncIterator[Any]:
        async def checked() -> AsyncIterator[Any]:
            async for msg in requests:
                if (
                    isinstance(msg, agent_pb2.AgentMessage)
                    and msg.WhichOneof("kind") == "hello"
                    and not who.is_agent(msg.hello.agent_id)
                ):
                    claimed = msg.hello.agent_id
                    log.warning("agent id mismatch", token_agent=who.name, claimed=claimed)
                    await context.abort_with_status(_not_yours(who.name, claimed))
                yield msg

        async for reply in behavior(checked(), context):
            yield reply

    return session


def _checked_heartbeat(behavior: Any, who: Identity) -> Any:
    async def heartbeat(request: Any, context: Ctx) -> Any:
        if isinstance(request, agent_pb2.HeartbeatRequest) and not who.is_agent(request.agent_id):
            await context.abort_with_status(_not_yours(who.name, request.agent_id))
        return await behavior(request, context)

    return heartbeat


def server_interceptors(tokens_file: str) -> list[grpc.aio.ServerInterceptor]:
    """Strict decoding, then token checks when a tokens file is given.

    The first interceptor wraps the handlers the next one returns: decoding
    comes first, so the token checks see decoded messages (a refused call
    is never decoded at all)."""
    out: list[grpc.aio.ServerInterceptor] = [DecodeInterceptor()]
    if tokens_file:
        out.append(AuthInterceptor(TokenStore(tokens_file)))
    return out
