"""``python -m bench._timed_coordinator coordinator ...``: the ``workhive
coordinator`` command with two benchmark-only histograms on its /metrics.

- ``workhive_bench_leader_turn_seconds``: wall time of each leader turn
  (``LeaderDriver._turn``: decide, write to etcd, push to agents);
- ``workhive_bench_loop_lag_seconds``: how late a 10 ms sleep on the
  coordinator's event loop wakes up (what anything else on the loop costs).

The production code is untouched: the wrappers are installed here, before
the command runs (used by ``bench.dashboard_overhead``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prometheus_client import Histogram

from workhive.coordinator import metrics as metrics_mod
from workhive.coordinator import node as node_mod
from workhive.coordinator.leader import driver as driver_mod

BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1,
    0.2, 0.5, 1.0, 2.0,
)  # fmt: skip

_init = metrics_mod.Metrics.__init__
_turn = driver_mod.LeaderDriver._turn
_run = node_mod.CoordinatorNode.run


_hist: dict[str, Histogram] = {}  # of the process's Metrics (one coordinator per process)


def _metrics_init(self: Any, *a: Any, **kw: Any) -> None:
    _init(self, *a, **kw)
    r = self.registry
    _hist["turn"] = Histogram(
        "workhive_bench_leader_turn_seconds", "Leader turn", buckets=BUCKETS, registry=r
    )
    _hist["lag"] = Histogram(
        "workhive_bench_loop_lag_seconds", "Event loop lag", buckets=BUCKETS, registry=r
    )


async def _timed_turn(self: Any, items: Any) -> None:
    t0 = time.perf_counter()
    try:
        await _turn(self, items)
    finally:
        _hist["turn"].observe(time.perf_counter() - t0)


async def _lag(hist: Histogram) -> None:
    while True:
        t0 = time.perf_counter()
        await asyncio.sleep(0.01)
        hist.observe(max(0.0, time.perf_counter() - t0 - 0.01))


async def _timed_run(self: Any, *a: Any, **kw: Any) -> None:
    probe = asyncio.create_task(_lag(_hist["lag"]))
    try:
        await _run(self, *a, **kw)
    finally:
        probe.cancel()


metrics_mod.Metrics.__init__ = _metrics_init  # type: ignore[method-assign]
driver_mod.LeaderDriver._turn = _timed_turn  # type: ignore[method-assign]
node_mod.CoordinatorNode.run = _timed_run  # type: ignore[method-assign]

if __name__ == "__main__":
    from workhive.coordinator.cli import main

    main()
