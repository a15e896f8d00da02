"""The HTTP API and its action rules, served from a stand-in follower (no etcd)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from tests.dashboard._fakes import FakeNode, chain_state, run_async, succeed
from workhive.coordinator.dashboard import Dashboard
from workhive.coordinator.model import TaskKey
from workhive.coordinator.settings import Settings

ACT = {"X-Workhive-Action": "1"}


def run(body: Callable[[TestClient[Any, Any], FakeNode], Awaitable[None]], **settings: Any) -> None:
    node = FakeNode(chain_state(n=3), settings=replace(Settings(), **settings))

    async def main() -> None:
        dash = Dashboard(node, min_interval=0.05)  # type: ignore[arg-type]
        client = TestClient(TestServer(dash.app()))
        await client.start_server()
        try:
            await body(client, node)
        finally:
            await client.close()
            await dash.live.stop()
            dash.model.close()

    run_async(main)


def test_status_counts_every_state() -> None:
    async def body(c: TestClient[Any, Any], node: FakeNode) -> None:
        r = await c.get("/api/v1/status")
        assert r.status == 200
        doc = await r.json()
        assert doc["projects"][0]["counts"]["ready"] == 1
        assert doc["served_by"] == {"id": "c0", "source": "standby"}

    run(body)


def test_unknown_project_is_404() -> None:
    async def body(c: TestClient[Any, Any], node: FakeNode) -> None:
        assert (await c.get("/api/v1/projects/nope")).status == 404
        assert (await c.get("/api/v1/projects/p/tasks/nope")).status == 404

    run(body)


def test_page_and_assets_are_served_with_a_strict_policy() -> None:
    async def body(c: TestClient[Any, Any], node: FakeNode) -> None:
        r = await c.get("/")
        assert r.status == 200 and "app.js" in await r.text()
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        assert (await c.get("/static/app.js")).status == 200
        assert (await c.get("/static/style.css")).status == 200

    run(body)


def test_event_stream_sends_status_then_the_changed_tasks() -> None:
    async def body(c: TestClient[Any, Any], node: FakeNode) -> None:
        r = await c.get("/api/v1/events?project=p")
        assert r.headers["Content-Type"].startswith("text/event-stream")
        seen: list[bytes] = []
        async with asyncio.timeout(5):
            while not any(b"event: project" in x for x in seen):
                seen.append(await r.content.readline())
        succeed(node.cs, TaskKey("p", "t0"))
        node.cs.revision = 11
        async with asyncio.timeout(5):
            while True:
                line = await r.content.readline()
                if line.startswith(b"data:") and b'"revision":11' in line and b"t0" in line:
                    break
        r.close()

    run(body)


def test_an_action_without_the_action_header_is_refused() -> None:
    async def body(c: TestClient[Any, Any], node: FakeNode) -> None:
        r = await c.post("/api/v1/projects/p/cancel")
        assert r.status == 403

    run(body)


def test_a_cross_origin_action_is_refused() -> None:
    async def body(c: TestClient[Any, Any], node: FakeNode) -> None:
        r = await c.post(
            "/api/v1/projects/p/cancel", headers={**ACT, "Origin": "http://evil.example"}
        )
        assert r.status == 403 and "cross-origin" in (await r.json())["error"]

    run(body)


def _tokens(tmp: Path) -> str:
    path = tmp / "tokens.yaml"
    path.write_text('"*client*": client-token-0123456789\nagent-1: agent-token-0123456789\n')
    return str(path)


def test_with_tokens_an_action_needs_the_client_token(tmp_path: Path) -> None:
    async def body(c: TestClient[Any, Any], node: FakeNode) -> None:
        url = "/api/v1/projects/p/cancel"
        assert (await c.post(url, headers=ACT)).status == 401
        bad = {**ACT, "Authorization": "Bearer wrong-token-0123456789"}
        assert (await c.post(url, headers=bad)).status == 401
        agent = {**ACT, "Authorization": "Bearer agent-token-0123456789"}
        assert (await c.post(url, headers=agent)).status == 403

    run(body, auth_tokens_file=_tokens(tmp_path))


def test_with_the_client_token_a_follower_without_leader_answers_503(tmp_path: Path) -> None:
    async def body(c: TestClient[Any, Any], node: FakeNode) -> None:
        node.leader_info = None
        ok = {**ACT, "Authorization": "Bearer client-token-0123456789"}
        assert (await c.post("/api/v1/projects/p/cancel", headers=ok)).status == 503

    run(body, auth_tokens_file=_tokens(tmp_path))


def test_reads_stay_open_with_tokens(tmp_path: Path) -> None:
    async def body(c: TestClient[Any, Any], node: FakeNode) -> None:
        assert (await c.get("/api/v1/agents")).status == 200

    run(body, auth_tokens_file=_tokens(tmp_path))


ASSETS = ("index.html", "app.js", "style.css")


def test_assets_ship_as_package_data() -> None:
    root = resources.files("workhive.coordinator.dashboard") / "static"
    for name in ASSETS:
        assert (root / name).is_file(), name


def test_no_asset_loads_anything_from_the_internet() -> None:
    root = resources.files("workhive.coordinator.dashboard") / "static"
    for name in ASSETS:
        text = (root / name).read_text()
        assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?(https?:)?//""", text), name
        assert "@import" not in text, name


def test_a_read_only_client_token_cannot_act(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text("clients:\n  viewer: {token: viewer-token-0123456789, role: read}\n")

    async def body(c: TestClient[Any, Any], node: FakeNode) -> None:
        ro = {**ACT, "Authorization": "Bearer viewer-token-0123456789"}
        r = await c.post("/api/v1/projects/p/cancel", headers=ro)
        assert r.status == 403 and "admin" in (await r.json())["error"]

    run(body, auth_tokens_file=str(path))


def test_a_drain_on_a_follower_without_leader_answers_503(tmp_path: Path) -> None:
    async def body(c: TestClient[Any, Any], node: FakeNode) -> None:
        node.leader_info = None
        ok = {**ACT, "Authorization": "Bearer client-token-0123456789"}
        assert (await c.post("/api/v1/agents/a1/drain", headers=ok)).status == 503

    run(body, auth_tokens_file=_tokens(tmp_path))


def test_an_admin_limited_to_a_project_prefix_cannot_drain_agents(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(
        "clients:\n  ci: {token: ci-admin-token-0123456789, role: admin, projects: ci-}\n"
    )

    async def body(c: TestClient[Any, Any], node: FakeNode) -> None:
        scoped = {**ACT, "Authorization": "Bearer ci-admin-token-0123456789"}
        r = await c.post("/api/v1/agents/a1/drain", headers=scoped)
        assert r.status == 403 and "limited to projects" in (await r.json())["error"]

    run(body, auth_tokens_file=str(path))
