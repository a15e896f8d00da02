"""How the etcd client proves who it is: TLS material for https endpoints and
etcd's user/password authentication (the token etcd issues rides on every
call, streams included, as ``token`` metadata)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import grpc


@dataclass(frozen=True)
class EtcdTLS:
    """TLS material for https endpoints (PEM bytes): the CA that signed etcd's
    certificate (system roots when ``None``) and an optional client certificate."""

    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = field(default=None, repr=False)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


@dataclass(frozen=True)
class EtcdAuth:
    """etcd user and password: the client authenticates and sends the token."""

    user: str
    password: str = field(repr=False)


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


class TokenInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds etcd's ``token`` metadata to every call, streams included."""

    def __init__(self, token: Callable[[], str]) -> None:
        self._token = token

    def _details(self, d: Any) -> Any:
        md = [(k, v) for k, v in (d.metadata or ()) if k != "token"]
        md.append(("token", self._token()))
        return _CallDetails(
            d.method,
            d.timeout,
            md,
            d.credentials,
            getattr(d, "wait_for_ready", None),
            getattr(d, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)
