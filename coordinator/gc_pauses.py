"""Short pauses from Python's cyclic garbage collector in a coordinator process
(docs/leader.md, "GC pauses").

A leader holds a large heap that lives as long as its projects (the mirror
of every task, the scheduler's records, the specs). A full collection
(generation 2) walks all of it while holding the GIL: 75-290 ms measured in
``bench.latency`` at 50 % load, and every request, heartbeat and turn waits
that long (the benchmark's p99 was these pauses). :class:`FreezeAfterFull`
freezes what survives each full collection (``gc.freeze``: moved to the
permanent generation, which collections skip), so the next full collection
walks only what was allocated since. Frozen objects are still freed by
reference counting the moment nothing refers to them; only garbage *cycles*
among them would stay, so every ``thaw_every`` seconds the freeze is undone
and the next full collection reclaims them (one long pause per interval, an
hour by default, instead of one per 25 % of heap growth).

Two more bounds on a full collection's walk. :meth:`FreezeAfterFull.install`
collects and freezes once at start: the first full collection of a process
otherwise walks everything its imports made (112 ms measured mid-benchmark,
154,000 objects). And Python runs a full collection only once the objects
promoted since the last one exceed a quarter of those it kept, so with
freezing a walk is still a quarter of the heap (22-60 ms measured, growing
with the mirror): the policy asks for one itself after ``full_every`` middle
(generation 1) collections, each of which promotes at most 7,000 objects at
the default thresholds, so no walk is longer than that many promotions
however large the heap.

Process-wide: installed by the ``workhive coordinator`` command only, never
by a library user of ``CoordinatorNode`` (tests run nodes in their own
process), unless the ``gc_freeze`` setting is off (``WORKHIVE_GC_FREEZE=0``:
pauses are observed, nothing is frozen). Each collection's pause is observed
in ``pauses`` (the ``workhive_gc_pause_seconds`` histogram, label
``generation``).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["FULL_EVERY", "THAW_EVERY", "FreezeAfterFull"]

THAW_EVERY = 3600.0
"""Seconds between two thaws (each lets one full collection reclaim frozen cycles)."""
FULL_EVERY = 3
"""Middle (generation 1) collections after which a full one is run and frozen."""


class _Histogram(Protocol):
    def labels(self, generation: str) -> Any: ...


class FreezeAfterFull:
    """Freeze the survivors of every full collection; thaw every ``thaw_every``.

    Invariant: at most one freeze per full collection, done off the collector
    (a callback only sets a flag; :meth:`step` acts); at most ``full_every``
    middle collections between two full ones (with freezing on); and between
    two thaws at most ``thaw_every`` seconds pass (on the injected ``clock``).
    """

    def __init__(
        self,
        pauses: _Histogram | None = None,
        *,
        freeze: bool = True,
        thaw_every: float = THAW_EVERY,
        full_every: int = FULL_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.freeze = freeze
        self.thaw_every = thaw_every
        self.full_every = full_every
        self.freezes = 0
        self.thaws = 0
        self._clock = clock
        self._pauses = pauses
        self._thawed = clock()
        self._started = 0.0
        self._full = threading.Event()
        self._due = threading.Event()  # a full collection is to be run
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        if self._pauses is not None:
            pause = time.perf_counter() - self._started
            self._pauses.labels(str(info["generation"])).observe(pause)
        if not self.freeze:
            return
        if info["generation"] == 2:
            self._full.set()
        elif info["generation"] == 1 and gc.get_count()[2] >= self.full_every:
            self._due.set()
            self._full.set()  # wakes the thread

    def step(self) -> None:
        """Freeze after a full collection; thaw when the interval passed."""
        if not self.freeze:
            return
        if self._due.is_set():
            self._due.clear()
            gc.collect()  # sets ``_full`` again: frozen just below
        if self._full.is_set():
            self._full.clear()
            gc.freeze()
            self.freezes += 1
        if self._clock() - self._thawed >= self.thaw_every:
            gc.unfreeze()
            self._thawed = self._clock()
            self.thaws += 1

    def install(self) -> None:
        """Freeze what the process made so far (with freezing on), watch
        collections and run :meth:`step` on a daemon thread."""
        if self.freeze:
            gc.collect()
            gc.freeze()
            self.freezes += 1
        gc.callbacks.append(self._on_gc)
        self._thread = threading.Thread(target=self._run, name="gc-freeze", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._full.wait(min(1.0, self.thaw_every))
            self.step()

    def uninstall(self) -> None:
        """Stop watching, and unfreeze everything."""
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        self._stop.set()
        self._full.set()
        if self._thread is not None:
            self._thread.join(5)
        gc.unfreeze()
