"""Who may act through the dashboard: the client API's rules, over HTTP.

Contract (docs/dashboard.md, "Actions and security"):

- reads (``GET``) are open to whoever reaches the port (default bind
  127.0.0.1); they show what ``workhive status`` shows;
- actions (``POST``) need what the gRPC client API needs: with
  ``auth_tokens_file``, ``Authorization: Bearer <token>`` of a client whose
  role is ``admin`` and whose project prefix covers the project (none or an
  unknown token: 401; an agent's token, a ``read``/``submit`` role or another
  prefix: 403); with mutual TLS
  (``tls_ca`` and ``tls_client_auth``), a client certificate signed by
  ``tls_ca`` (403 without);
- every action also needs the header ``X-Workhive-Action: 1`` and, when the
  browser sends ``Origin``, an origin naming this very host: a page from
  another site cannot forge one (a custom header forces a CORS preflight,
  which this server never grants).
- ``tls_cert``/``tls_key`` set: the dashboard serves HTTPS with them.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import urlparse

from aiohttp import web

from workhive.coordinator.service.tokens import TokenStore
from workhive.coordinator.settings import Settings

ACTION_HEADER = "X-Workhive-Action"


@dataclass(frozen=True)
class Denied:
    status: int
    message: str


def ssl_context(s: Settings) -> ssl.SSLContext | None:
    """HTTPS with the gRPC certificate; client certificates asked for, checked per action."""
    if not s.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(s.tls_cert, s.tls_key)
    if s.tls_ca:
        ctx.load_verify_locations(s.tls_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


class ActionGuard:
    """Checks one action request (see module docstring)."""

    def __init__(self, s: Settings) -> None:
        self.tokens = TokenStore(s.auth_tokens_file) if s.auth_tokens_file else None
        self.mtls = bool(s.tls_cert and s.tls_ca and s.tls_client_auth)

    def bearer(self, request: web.Request) -> str:
        auth = request.headers.get("Authorization", "")
        return auth[7:].strip() if auth[:7].lower() == "bearer " else ""

    def check(self, request: web.Request, project: str = "") -> Denied | None:
        """``None`` when the request may act (on ``project``), else why not."""
        if request.headers.get(ACTION_HEADER) != "1":
            return Denied(403, f"actions need the header {ACTION_HEADER}: 1")
        origin = request.headers.get("Origin")
        if origin is not None and urlparse(origin).netloc != request.host:
            return Denied(403, "cross-origin action refused")
        if self.mtls:
            peer = request.transport.get_extra_info("peercert") if request.transport else None
            if not peer:
                return Denied(403, "a client certificate signed by tls_ca is required")
        if self.tokens is not None:
            token = self.bearer(request)
            who = self.tokens.identity(token) if token else None
            if who is None:
                why = "an unknown bearer token" if token else "no bearer token"
                return Denied(401, f"{why}: actions need the client token")
            if who.agent:
                return Denied(403, "an agent token cannot use the client API")
            if not who.may("admin"):
                return Denied(
                    403, f"client {who.name!r} (role {who.role}) may not act: admin needed"
                )
            if project and not who.sees(project):
                return Denied(403, f"client {who.name!r} may not touch project {project!r}")
            if not project and who.projects:
                return Denied(403, f"client {who.name!r} is limited to projects {who.projects!r}*")
        return None
