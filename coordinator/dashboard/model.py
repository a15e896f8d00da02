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
- an etcd read (no mirror available) is paced the same way;
- a frame costs O(changes), not O(tasks): states are updated from the
  previous frame for the tasks whose record, claim or result changed (and
  the children of those that finished), recomputed in full every
  ``FULL_EVERY`` frames or when the source changes; the task rows of the
  projects someone looks at are kept the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from workhive.coordinator.dashboard.layout import Layout, layout
from workhive.coordinator.dashboard.snapshot import Snapshot, take_snapshot
from workhive.coordinator.dashboard.tracker import Tracker
from workhive.coordinator.dashboard.views import (
    States,
    changed_keys,
    counts_of,
    project_states,
    task_row,
    update_states,
)
from workhive.coordinator.model import TaskKey

if TYPE_CHECKING:
    from workhive.coordinator.node import CoordinatorNode

T = TypeVar("T")
COST_FACTOR = 10.0
FULL_EVERY = 60  # frames between two full recomputations (the others are incremental)


@dataclass(frozen=True)
class Frame:
    """A snapshot and the task states computed from it."""

    snap: Snapshot
    states: States
    touched: dict[str, set[str]] | None  # tasks recomputed since the last frame (None: all)
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
        self._rows: dict[str, dict[str, dict[str, Any]]] = {}
        self._incremental = 0

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
            states, touched, point = await self.run(lambda: self._compute(last, snap))
            now = time.monotonic()
            self._frame = Frame(snap, states, touched, point, now, now - t0)
            return self._frame

    @property
    def latest(self) -> Frame | None:
        return self._frame

    def _compute(
        self, last: Frame | None, snap: Snapshot
    ) -> tuple[States, dict[str, set[str]] | None, dict[str, float]]:
        """A frame's states from the last one (worker thread)."""
        touched: dict[str, set[str]] | None = None
        if last is None or last.snap.source != snap.source or self._incremental >= FULL_EVERY:
            states = project_states(snap)
            self._incremental = 0
        else:
            changed = changed_keys(last.snap, snap)
            states, touched = update_states(
                snap, last.states, changed, lambda pid: self._layout(snap, pid).children
            )
            self._incremental += 1
        point = self.tracker.observe(snap, {p: counts_of(s) for p, s in states.items()})
        for key in [k for k in self._layouts if k[0] not in snap.projects]:
            del self._layouts[key]  # a deleted project (retention)
        for pid in list(self._rows):
            if pid not in states:
                del self._rows[pid]
            elif touched is None:
                del self._rows[pid]  # rebuilt on the next request
            else:
                rows = self._rows[pid]
                lay = self._layout(snap, pid)
                for tid in touched.get(pid, ()):
                    st = states[pid].get(tid)
                    if st is None:
                        rows.pop(tid, None)
                    else:
                        rows[tid] = task_row(snap, TaskKey(pid, tid), st, self.tracker, lay)
        return states, touched, point

    def rows_of(self, frame: Frame, pid: str) -> dict[str, dict[str, Any]]:
        """The task rows of ``pid`` as of the latest frame (worker thread);
        kept up to date from then on."""
        rows = self._rows.get(pid)
        if rows is None:
            snap, per = frame.snap, frame.states.get(pid, {})
            lay = self._layout(snap, pid)
            rows = self._rows[pid] = {
                tid: task_row(snap, TaskKey(pid, tid), st, self.tracker, lay)
                for tid, st in per.items()
            }
        return rows

    def layout_of(self, frame: Frame, pid: str) -> Layout | None:
        """The project's DAG layout (computed once; call on the worker thread)."""
        return self._layout(frame.snap, pid) if pid in frame.snap.projects else None

    def _layout(self, snap: Snapshot, pid: str) -> Layout:
        meta = snap.projects.get(pid)
        key = (pid, meta.mod_revision if meta else 0)
        got = self._layouts.get(key)
        if got is None:
            specs = {k.task: r.spec for k, r in snap.tasks.items() if k.project == pid}
            got = self._layouts[key] = layout(specs)
        return got
