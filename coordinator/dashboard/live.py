"""Server-sent events: one frame a tick to every open page, bounded in rate.

Contract (docs/dashboard.md, "Live updates"):

- one ticker runs while at least one page listens; each tick takes the
  model's latest frame (so the rate is the model's: at most one per
  ``min_interval``, at most 10 % of wall time) and sends, once per frame:
  ``status`` (the overview without its series, plus the newest series
  point) to everyone and, to pages watching a project, ``project`` with the
  rows of the tasks whose state changed (``since`` .. ``revision``), or
  ``{"reload": true}`` when more than ``DELTA_LIMIT`` changed;
- events are encoded once, on the worker thread, and shared by all pages;
- a page that does not keep up (``QUEUE`` events pending) has its queue
  cleared and gets ``resync``: it re-reads what it shows. Memory per page is
  bounded; the leader never waits for a browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from workhive.coordinator.dashboard.model import Frame, Model
from workhive.coordinator.dashboard.views import project_delta, status_view
from workhive.coordinator.model import TaskState

log = structlog.get_logger("workhive.dashboard")

DELTA_LIMIT = 2000
QUEUE = 8
MAX_PAGES = 64


def sse(event: str, data: Any) -> bytes:
    """One SSE message."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


@dataclass(eq=False)
class Page:
    """One open event stream."""

    project: str
    queue: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(QUEUE))

    def send(self, msg: bytes | None) -> None:
        if self.queue.full():
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(sse("resync", {}))
        self.queue.put_nowait(msg)


class LiveFeed:
    """Fans frames out to pages (see module docstring)."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.pages: set[Page] = set()
        self._task: asyncio.Task[None] | None = None
        self._last: Frame | None = None
        self._sent: dict[str, dict[str, TaskState]] = {}

    def open(self, project: str) -> Page | None:
        """A new page stream (``None``: too many open)."""
        if len(self.pages) >= MAX_PAGES:
            return None
        page = Page(project)
        self.pages.add(page)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._tick(), name="dashboard-live")
        return page

    def close(self, page: Page) -> None:
        self.pages.discard(page)

    async def stop(self) -> None:
        for page in list(self.pages):
            page.send(None)
        self.pages.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _encode(self, frame: Frame, projects: set[str]) -> tuple[bytes, dict[str, bytes]]:
        """Events for ``frame`` (worker thread)."""
        model = self.model
        status = status_view(frame.snap, frame.states, model.tracker)
        status["series"] = []
        status["point"] = frame.point
        status["frame_cost_ms"] = round(1000 * frame.cost, 2)
        status["peers"] = list(model.node.settings.dashboard_peers)
        since = self._last.revision if self._last is not None else 0
        out: dict[str, bytes] = {}
        for pid in projects:
            now = frame.states.get(pid)
            if now is None:
                continue
            before = self._sent.get(pid)
            rows = model.rows_of(frame, pid)
            delta = project_delta(pid, before, now, rows.__getitem__, DELTA_LIMIT)
            self._sent[pid] = now
            body: dict[str, Any] = {"reload": True} if delta is None else delta
            body.update(since=since, revision=frame.revision)
            out[pid] = sse("project", body)
        for pid in list(self._sent):
            if pid not in projects:
                del self._sent[pid]
        return sse("status", status), out

    async def _tick(self) -> None:
        while self.pages:
            try:
                frame = await self.model.frame()
                if frame is not self._last:
                    projects = {p.project for p in self.pages if p.project}
                    status, per = await self.model.run(
                        functools.partial(self._encode, frame, projects)
                    )
                    self._last = frame
                    for page in list(self.pages):
                        page.send(status)
                        if page.project in per:
                            page.send(per[page.project])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep serving: the next tick may work
                log.warning("dashboard frame failed", error=str(exc))
            await asyncio.sleep(self.model.min_interval / 2)
