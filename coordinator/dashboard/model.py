"""The dashboard's state: the latest frame, refreshed at a bounded rate.

Contract (docs/dashboard.md, "Cost to the leader"):

- a :class:`Frame` is one snapshot plus the effective states of every task
  computed from it; frames are made one at a time, at most once per
  ``min_interval`` and at most 10 % of wall time (a frame that took ``c``
  seconds to compute is reused for at least ``10 c``), however many pages
  and API calls ask;
- everything but the snapshot's dict copies runs on one worker thread
  (``run``): view computations, the tracker and DAG layouts never run on the
  event loop, and being serial they need no locks;
- an etcd read (no mirror available) is paced the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from workhive.coordinator.dashboard.layout import Layout, layout
from workhive.coordinator.dashboard.snapshot import Snapshot, take_snapshot
from workhive.coordinator.dashboard.tracker import Tracker
from workhive.coordinator.dashboard.views import States, counts_of, project_states

if TYPE_CHECKING:
    from workhive.coordinator.node import CoordinatorNode

T = TypeVar("T")
COST_FACTOR = 10.0


@dataclass(frozen=True)
class Frame:
    """A snapshot and the task states computed from it."""

    snap: Snapshot
    states: States
    point: dict[str, float]
    made_at: float  # monotonic
    cost: float  # seconds spent making it (snapshot + states)

    @property
    def revision(self) -> int:
        return self.snap.revision


class Model:
    """Frames, layouts and the tracker of one replica's dashboard."""

    def __init__(self, node: CoordinatorNode, min_interval: float = 1.0) -> None:
        self.node = node
        self.min_interval = min_interval
        self.tracker = Tracker()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dashboard")
        self._lock = asyncio.Lock()
        self._frame: Frame | None = None
        self._layouts: dict[tuple[str, int], Layout] = {}

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the dashboard's single worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _fresh(self, f: Frame | None, now: float) -> bool:
        return f is not None and now - f.made_at < max(self.min_interval, COST_FACTOR * f.cost)

    async def frame(self) -> Frame:
        """The latest frame, made now if the last one is due (see module docstring)."""
        if self._fresh(self._frame, time.monotonic()):
            assert self._frame is not None
            return self._frame
        async with self._lock:
            last = self._frame
            if self._fresh(last, time.monotonic()):
                assert last is not None
                return last
            t0 = time.monotonic()
            snap = await take_snapshot(self.node)
            assert snap is not None
            tracker = self.tracker

            def compute() -> tuple[States, dict[str, float]]:
                states = project_states(snap)
                point = tracker.observe(snap, {p: counts_of(s) for p, s in states.items()})
                return states, point

            states, point = await self.run(compute)
            now = time.monotonic()
            self._frame = Frame(snap, states, point, now, now - t0)
            return self._frame

    def layout_of(self, frame: Frame, pid: str) -> Layout | None:
        """The project's DAG layout (computed once; call on the worker thread)."""
        meta = frame.snap.projects.get(pid)
        if meta is None:
            return None
        key = (pid, meta.mod_revision)
        got = self._layouts.get(key)
        if got is None:
            specs = {k.task: r.spec for k, r in frame.snap.tasks.items() if k.project == pid}
            got = self._layouts[key] = layout(specs)
        return got
