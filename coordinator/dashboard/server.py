"""The dashboard's HTTP server, on the coordinator's event loop (aiohttp).

Routes (documented in docs/dashboard.md, "API"):

``GET /`` and ``/static/*``   the single-page app (files shipped in the package)
``GET /api/v1/status``        overview: projects and counts, leader, history, metrics
``GET /api/v1/projects/<pid>``            every task with its layout row, steals
``GET /api/v1/projects/<pid>/tasks/<tid>`` one task: spec, claim, result, history
``GET /api/v1/agents``        agents: capabilities, slots, running, queued, lease
``GET /api/v1/events[?project=<pid>]``    server-sent events (``live.py``)
``POST /api/v1/projects/<pid>/cancel``    cancel (``auth.py`` decides who may)
``POST /api/v1/agents/<id>/drain``        asks the agent to drain (admin, no project prefix)

Handlers never compute on the loop: they take the model's frame and run the
view and its JSON encoding on the dashboard's worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import orjson
import structlog
from aiohttp import web

from workhive.client import AccessDenied, Client, UnknownProject, WorkhiveError
from workhive.coordinator.dashboard.auth import ActionGuard, ssl_context
from workhive.coordinator.dashboard.live import LiveFeed
from workhive.coordinator.dashboard.model import Model
from workhive.coordinator.dashboard.views import (
    agents_view,
    project_view,
    status_view,
    task_view,
)
from workhive.coordinator.service.security import channel_credentials

if TYPE_CHECKING:
    from workhive.coordinator.node import CoordinatorNode

log = structlog.get_logger("workhive.dashboard")
STATIC = Path(__file__).resolve().parent / "static"  # resolved: an editable install links files
PING_EVERY = 15.0


def security_headers(peers: tuple[str, ...] = ()) -> dict[str, str]:
    """Strict headers for every response; the page may probe ``peers`` (connect-src)."""
    origins = " ".join(sorted({f"{u.scheme}://{u.netloc}" for u in map(urlparse, peers)}))
    connect = f"'self' {origins}".strip()
    return {
        "Content-Security-Policy": (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            f"connect-src {connect}; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(
        body=body,
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _error(status: int, message: str) -> web.Response:
    return _json(orjson.dumps({"error": message}), status)


class Dashboard:
    """One replica's dashboard: ``start()``, then ``url``; ``stop()`` on shutdown."""

    def __init__(self, node: CoordinatorNode, min_interval: float = 1.0) -> None:
        self.node = node
        self.model = Model(node, min_interval)
        self.live = LiveFeed(self.model)
        self.guard = ActionGuard(node.settings)
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._scheme = "https" if node.settings.tls_cert else "http"
        self.headers = security_headers(node.settings.dashboard_peers)

    @property
    def url(self) -> str:
        host = self.node.settings.dashboard_listen
        host = f"[{host}]" if ":" in host else host
        return f"{self._scheme}://{host}:{self.port}/"

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers])
        r = app.router
        r.add_get("/", self._index)
        r.add_static("/static/", STATIC, append_version=False)
        r.add_get("/api/v1/status", self._status)
        r.add_get("/api/v1/projects/{pid}", self._project)
        r.add_get("/api/v1/projects/{pid}/tasks/{tid}", self._task)
        r.add_get("/api/v1/agents", self._agents)
        r.add_get("/api/v1/events", self._events)
        r.add_post("/api/v1/projects/{pid}/cancel", self._cancel)
        r.add_post("/api/v1/agents/{aid}/drain", self._drain)
        return app

    async def start(self) -> None:
        s = self.node.settings
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, s.dashboard_listen, s.dashboard_port, ssl_context=ssl_context(s)
        )
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else s.dashboard_port
        log.info("dashboard serving", url=self.url)

    async def stop(self) -> None:
        await self.live.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.model.close()

    @web.middleware
    async def _headers(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        resp: web.StreamResponse = await handler(request)
        if not resp.prepared:
            resp.headers.update(self.headers)
        return resp

    # -- pages and reads -----------------------------------------------------------

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def _view(self, fn: Callable[[], Any]) -> web.Response:
        body = await self.model.run(lambda: None if (v := fn()) is None else orjson.dumps(v))
        return _error(404, "not found") if body is None else _json(body)

    async def _status(self, request: web.Request) -> web.Response:
        f = await self.model.frame()

        def view() -> Any:
            doc = status_view(f.snap, f.states, self.model.tracker)
            doc["frame_cost_ms"] = round(1000 * f.cost, 2)
            doc["peers"] = list(self.node.settings.dashboard_peers)
            return doc

        return await self._view(view)

    async def _project(self, request: web.Request) -> web.Response:
        pid = request.match_info["pid"]
        f = await self.model.frame()

        def view() -> Any:
            latest = self.model.latest or f  # rows follow the latest frame
            lay = self.model.layout_of(latest, pid)
            if lay is None:
                return None
            rows = self.model.rows_of(latest, pid)
            return project_view(latest.snap, pid, latest.states, self.model.tracker, lay, rows)

        return await self._view(view)

    async def _task(self, request: web.Request) -> web.Response:
        pid, tid = request.match_info["pid"], request.match_info["tid"]
        f = await self.model.frame()
        return await self._view(lambda: task_view(f.snap, pid, tid, f.states, self.model.tracker))

    async def _agents(self, request: web.Request) -> web.Response:
        f = await self.model.frame()
        refresher = self.node.refresher

        def lease_age(lease_id: int) -> float | None:
            return refresher.last_keepalive(lease_id) if refresher is not None else None

        return await self._view(lambda: {"agents": agents_view(f.snap, lease_age)})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        page = self.live.open(request.query.get("project", ""))
        if page is None:
            return _error(503, "too many open dashboard pages")
        resp = web.StreamResponse(
            headers={
                **self.headers,
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await resp.prepare(request)
            await resp.write(b"retry: 1000\n\n")
            while True:
                try:
                    msg = await asyncio.wait_for(page.queue.get(), PING_EVERY)
                except TimeoutError:
                    await resp.write(b": ping\n\n")
                    continue
                if msg is None:
                    break
                await resp.write(msg)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.live.close(page)
        return resp

    # -- actions ---------------------------------------------------------------------

    async def _cancel(self, request: web.Request) -> web.Response:
        pid = request.match_info["pid"]
        denied = self.guard.check(request, project=pid)
        if denied is not None:
            return _error(denied.status, denied.message)
        reason = "cancelled from the dashboard"
        driver = self.node.driver
        mirror = driver.cluster() if driver is not None else None
        if driver is not None and mirror is not None:
            if pid not in mirror.projects:
                return _error(404, f"no project {pid!r}")
            await driver.cancel(pid, reason)
            log.info("project cancelled from the dashboard", project=pid)
            return _json(orjson.dumps({"project": pid, "cancelled": True, "by": self.node.id}))
        leader = self.node.leader_info
        if leader is None:
            return _error(503, "no leader at the moment; try again")
        return await self._forward_cancel(pid, reason, leader.address, self.guard.bearer(request))

    async def _forward_cancel(
        self, pid: str, reason: str, address: str, token: str
    ) -> web.Response:
        """A follower passes the cancel to the leader over the gRPC client API,
        with the caller's token."""
        failed = await self._on_leader(lambda c: c.cancel(pid, reason), address, token)
        if failed is not None:
            return failed
        log.info("project cancel passed to the leader", project=pid, leader=address)
        return _json(orjson.dumps({"project": pid, "cancelled": True, "by": address}))

    async def _on_leader(
        self, fn: Callable[[Client], object], address: str, token: str
    ) -> web.Response | None:
        """Run ``fn`` against the leader's client API with the caller's token;
        the error response if it failed, else ``None``."""
        s = self.node.settings
        creds = channel_credentials(s.tls_ca or None, s.tls_cert, s.tls_key) if s.tls_cert else None

        def call() -> None:
            with Client(
                [address], timeout=5.0, call_deadline=5.0, credentials=creds, token=token or None
            ) as c:
                fn(c)

        try:
            await asyncio.to_thread(call)
        except UnknownProject as exc:
            return _error(404, f"leader: {exc}")
        except AccessDenied as exc:
            return _error(403, f"leader refused: {exc}")
        except WorkhiveError as exc:
            status = 404 if exc.code == "NOT_FOUND" else 502
            return _error(status, f"leader did not do it: {exc}")
        return None

    async def _drain(self, request: web.Request) -> web.Response:
        aid = request.match_info["aid"]
        denied = self.guard.check(request)
        if denied is not None:
            return _error(denied.status, denied.message)
        reason = "drained from the dashboard"
        if self.node.driver is not None:
            if not self.node.hub.drain(aid, reason):
                return _error(404, f"no agent {aid[:80]!r} is connected to this leader")
            log.info("agent asked to drain from the dashboard", agent=aid)
            return _json(orjson.dumps({"agent": aid, "draining": True, "by": self.node.id}))
        leader = self.node.leader_info
        if leader is None:
            return _error(503, "no leader at the moment; try again")
        token = self.guard.bearer(request)
        failed = await self._on_leader(lambda c: c.drain_agent(aid, reason), leader.address, token)
        if failed is not None:
            return failed
        log.info("agent drain passed to the leader", agent=aid, leader=leader.address)
        return _json(orjson.dumps({"agent": aid, "draining": True, "by": leader.address}))
