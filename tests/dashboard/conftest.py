"""Fixtures of the dashboard tests: a real cluster with the dashboard on, and
a real headless Chromium (Debian's ``chromium``, driven by Playwright).

The browser is the system one (``/usr/bin/chromium``; ``.ci/run`` installs
it): Playwright never downloads one here. Without it the browser tests skip
with the reason, unless ``WORKHIVE_REQUIRE_BROWSER=1`` (CI), which turns the
absence into a failure. Every fixture cleans up whatever the test does.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.etcd_fixtures import EtcdTarget
from tests.integration.cluster.conftest import Harness
from workhive.coordinator.local_cluster.ports import free_port, wait_for_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = os.environ.get("WORKHIVE_SCREENSHOTS", "")  # a folder: write PNGs there


def _require_browser() -> None:
    why = ""
    if not Path(CHROMIUM).exists():
        why = f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            why = "the playwright package is missing (pip install '.[dev]')"
    if why:
        if os.environ.get("WORKHIVE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"WORKHIVE_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def browser_context() -> Iterator[Any]:
    """One headless Chromium per test module, with a fresh profile directory.

    Module scope, not session: while Playwright's sync API lives it keeps an
    event loop running on the test thread, and later tests' ``asyncio.run``
    would refuse to start."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="workhive-chromium-")
    pw = sync_playwright().start()
    try:
        ctx = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            yield ctx
        finally:
            ctx.close()
    finally:
        pw.stop()
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """A browser tab that records console errors and uncaught exceptions."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def shot(self, name: str) -> None:
        """Write ``<name>.png`` into WORKHIVE_SCREENSHOTS (``make screenshots``)."""
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


@pytest.fixture
def tab(browser_context: Any) -> Iterator[Page]:
    page = browser_context.new_page()
    try:
        yield Page(page)
    finally:
        page.close()


class DashCluster:
    """A :class:`Harness` whose coordinators serve the dashboard."""

    def __init__(self, harness: Harness) -> None:
        self.h = harness
        self.ports: dict[str, int] = {}

    def start(self, coordinators: int = 3, agents: int = 0) -> DashCluster:
        ports = [free_port() for _ in range(coordinators)]
        urls = [f"http://127.0.0.1:{p}/" for p in ports]
        for i, port in enumerate(ports):
            peers = ",".join(u for j, u in enumerate(urls) if j != i) or ""
            extra = ["--dashboard-port", str(port)]
            if peers:
                extra += ["--dashboard-peers", peers]
            proc = self.h.cluster.add_coordinator(extra=extra)
            self.ports[proc.name] = port
        self.h.cluster.wait_coordinators()
        for port in self.ports.values():
            wait_for_port(port, 30)
        for _ in range(agents):
            self.h.add_agent()
        self.h.wait_leader()
        return self

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}/"

    def api(self, name: str, path: str) -> Any:
        with urllib.request.urlopen(self.url(name) + path.lstrip("/"), timeout=10) as r:
            return json.loads(r.read())

    def follower(self) -> str:
        """A coordinator that does not lead (waits until one has seen the leader)."""
        leader = self.h.wait_leader().leader.leader_id
        return next(n for n in self.ports if n != leader)

    def wait(self, check: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def dash_cluster(etcd: EtcdTarget, tmp_path: Path) -> Iterator[DashCluster]:
    h = Harness(etcd, tmp_path, {})
    try:
        yield DashCluster(h)
    finally:
        h.stop()
