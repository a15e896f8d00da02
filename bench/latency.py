"""Ready-to-start latency at ~10/50/90% of measured capacity (open loop).

``python -m bench.latency [--json] [--quick] [--work-ms MS] [--backlog N] [--ray]``

One coordinator process on an embedded etcd; 8 SDK agents (1 slot each), one
per process (``bench._agent_host``, the shape users deploy), printing each
handler start with the wall clock this process stamps arrivals with. Each
task sleeps ``--work-ms`` (default 20 ms).

1. Capacity: a burst of independent tasks, completion rate = capacity.
2. For each load level, two arrival shapes, one after the other:

   - ``tasks``: every task arrives on its own (a Poisson process of the
     level's rate) as a one-task project, submitted from a pool of client
     threads so that a slow submit does not delay the next arrival;
   - ``ticks``: every ``tick`` seconds one small project of independent
     tasks (Poisson-distributed count, mean rate x tick), all ready at once.

   A task is ready when its project becomes visible, which happens inside
   the submit call: latency is measured from the arrival (the submit call's
   start, or for ``tasks`` its scheduled time if the pool started it later:
   the upper bound) and from the call's return (lower bound) to the handler
   start.

``--backlog N`` first submits a project of N tasks no agent can run (they
require a capability none has): the leader then serves the arrivals while
holding a large heap, as one with a long project in its queue does. Each
level reports ``gc_pauses``: the leader's garbage-collector pauses during it
(count, and the longest, by bucket, from ``workhive_gc_pause_seconds``).

``--ray`` then offers the same arrivals (shapes, rates, seeds) to Ray, once
workhive's cluster is gone: ``ray.init(num_cpus=8)``, one remote call per
task, each returning the wall time it started at (``ray`` in the result, and
``<shape>_p50_vs_ray_at_50`` / ``_p99_`` ratios). Ray stores nothing durably:
it is what users would otherwise pick, not a like-for-like design.

The load generator (this process) freezes its heap before each level, so
that its own garbage collections (31 ms seen) do not delay arrivals.

Each level also reports ``queueing_floor``: the same figures for a dispatcher
with no overhead at all (the same arrivals, FIFO onto the same 8 slots, each
task taking exactly ``--work-ms``): what the slots alone cost. In the
``ticks`` shape a burst larger than the free slots waits a whole task
duration, so its p99 cannot be below ``--work-ms`` whatever the scheduler.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench._common import Bench, emit, log, parse_args, summary_ms, to_spec
from workhive.coordinator.model import ProjectSpec, TaskSpec

AGENTS = 8
SUBMIT_THREADS = 16  # client threads submitting one-task projects (``tasks`` shape)


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth for small means, normal approximation above
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    threshold, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= threshold:
            return k
        k += 1


class Starts:
    """Handler starts of the agent processes: ``START <wall> <project> <task> ...``
    lines of their logs, read incrementally."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._offsets: dict[Path, int] = {}
        self.at: dict[tuple[str, str], float] = {}  # (project, task) -> first start

    def read(self) -> dict[tuple[str, str], float]:
        for path in sorted(self.run_dir.glob("agents-*.log")):
            with path.open("rb") as f:
                f.seek(self._offsets.get(path, 0))
                chunk = f.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self._offsets[path] = self._offsets.get(path, 0) + len(complete)
            for line in complete.decode(errors="replace").splitlines():
                part = line.split()
                if len(part) >= 4 and part[0] == "START":
                    self.at.setdefault((part[2], part[3]), float(part[1]))
        return self.at

    def of(self, prefix: str) -> dict[tuple[str, str], float]:
        return {k: t for k, t in self.read().items() if k[0].startswith(prefix)}


def measure_capacity(b: Bench, starts: Starts, n: int) -> float:
    spec = to_spec("cap", [(f"t{i}", []) for i in range(n)])
    b.submit(spec)
    deadline = time.monotonic() + 120
    while len(starts.of("cap")) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    # rate of starts over the burst (the last task's start ends the burst)
    times = sorted(starts.of("cap").values())
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def queueing_floor(arrivals: Sequence[float], service: float, slots: int) -> list[float]:
    """Each task's wait (seconds) under a dispatcher with no overhead: tasks
    start in arrival order on the first of ``slots`` free slots and run
    ``service`` seconds each."""
    free = [float("-inf")] * slots
    waits = []
    for t in sorted(arrivals):
        start = max(t, heapq.heappop(free))
        heapq.heappush(free, start + service)
        waits.append(start - t)
    return waits


class _Arrivals:
    """Per task: when it arrived (ready at the latest) and when its submit returned."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrived: dict[tuple[str, str], float] = {}
        self.returned: dict[tuple[str, str], float] = {}

    def note(self, pid: str, k: int, arrived: float, returned: float) -> None:
        with self.lock:
            for j in range(k):
                self.arrived[(pid, f"t{j}")] = arrived
                self.returned[(pid, f"t{j}")] = returned


Submit = Callable[[str, int], None]
"""Submits a project ``pid`` of ``k`` independent tasks ``t0``..``t<k-1>``."""
Started = Callable[[str], dict[tuple[str, str], float]]
"""Handler starts so far of the tasks whose project id starts with a prefix."""


def _submit(submit: Submit, arrivals: _Arrivals, pid: str, k: int, arrived: float) -> None:
    """Submit a ``k``-task project that arrived at ``arrived`` (wall clock)."""
    t0 = time.time()
    submit(pid, k)
    arrivals.note(pid, k, min(arrived, t0), time.time())


def _offer_ticks(
    submit: Submit,
    arrivals: _Arrivals,
    name: str,
    rate: float,
    seconds: float,
    tick: float,
    seed: int,
) -> None:
    rng = random.Random(seed)
    t_begin = next_tick = time.monotonic()
    i = 0
    while time.monotonic() - t_begin < seconds:
        k = _poisson(rng, rate * tick)
        if k:
            _submit(submit, arrivals, f"{name}-{i}", k, time.time())
        i += 1
        next_tick += tick
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def _offer_tasks(
    submit: Submit, arrivals: _Arrivals, name: str, rate: float, seconds: float, seed: int
) -> None:
    rng = random.Random(seed)
    wall = time.time() - time.monotonic()  # due times are monotonic; arrivals wall
    with ThreadPoolExecutor(SUBMIT_THREADS, thread_name_prefix="submit") as pool:
        t_end = time.monotonic() + seconds
        due = time.monotonic()
        i = 0
        while True:
            due += rng.expovariate(rate)
            if due >= t_end:
                break
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(_submit, submit, arrivals, f"{name}-{i}", 1, due + wall)
            i += 1


def run_level(
    submit: Submit,
    started_of: Started,
    name: str,
    rate: float,
    seconds: float,
    tick: float,
    seed: int,
    shape: str = "ticks",
    work_s: float = 0.02,
) -> dict[str, Any]:
    arrivals = _Arrivals()
    gc.collect()  # the load generator's own collections must not delay arrivals
    gc.freeze()
    if shape == "ticks":
        _offer_ticks(submit, arrivals, name, rate, seconds, tick, seed)
    else:
        _offer_tasks(submit, arrivals, name, rate, seconds, seed)
    submitted = len(arrivals.arrived)
    # wait for the tail to start
    deadline = time.monotonic() + 30
    started = started_of(name + "-")
    while len(started) < submitted and time.monotonic() < deadline:
        time.sleep(0.05)
        started = started_of(name + "-")
    ready_start, ready_end = arrivals.arrived, arrivals.returned
    lat_hi = [started[k] - ready_start[k] for k in started if k in ready_start]
    lat_lo = [max(0.0, started[k] - ready_end[k]) for k in started if k in ready_end]
    return {
        "arrivals": shape,
        "offered_tasks_per_s": round(rate, 1),
        "achieved_tasks_per_s": round(submitted / seconds, 1),
        "submitted": submitted,
        "started": len(started),
        "from_submit_start": summary_ms(lat_hi),
        "from_submit_return": summary_ms(lat_lo),
        "queueing_floor": summary_ms(queueing_floor(list(ready_start.values()), work_s, AGENTS)),
    }


def _gc_pauses(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Full collections (generation 2) on the leader between two metric reads:
    how many, and the smallest bucket bound the longest one fits in."""
    prefix = 'workhive_gc_pause_seconds_bucket{generation="2",le="'
    counts = {
        k[len(prefix) : -2]: after[k] - before.get(k, 0.0) for k in after if k.startswith(prefix)
    }
    total = counts.pop("+Inf", 0.0)
    bounds = sorted((float(le), n) for le, n in counts.items())
    longest = next((le for le, n in bounds if n >= total), None) if total else 0.0
    return {"full_collections": int(total), "longest_le_s": longest}


def _backlog(b: Bench, n: int) -> None:
    """A project of ``n`` tasks that never start (a capability no agent has)."""
    tasks = tuple(
        TaskSpec(id=f"b{i}", requires=frozenset({"absent"}), estimate=1.0) for i in range(n)
    )
    b.submit(ProjectSpec(id="backlog", tasks=tasks))


SHAPES = ("tasks", "ticks")
LOADS = (10, 50, 90)  # percent of workhive's measured capacity


def _workhive_submit(b: Bench) -> Submit:
    return lambda pid, k: b.submit(to_spec(pid, [(f"t{j}", []) for j in range(k)]))


def run_ray(rates: dict[int, float], seconds: float, tick: float, work_ms: float) -> dict[str, Any]:
    """The same arrivals (shapes, rates, seeds) on Ray: ``ray.init(num_cpus=8)``,
    one remote call per task, each sleeping ``work_ms`` and returning the wall
    time it started at."""
    import ray

    ray.init(
        num_cpus=AGENTS, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False
    )
    out: dict[str, Any] = {}
    try:
        work = ray.remote(num_cpus=1)(_sleep_then_start)
        ray.get([work.remote(0.0) for _ in range(64)])  # warm up the worker pool
        refs: dict[tuple[str, str], Any] = {}
        lock = threading.Lock()

        def submit(pid: str, k: int) -> None:
            made = {(pid, f"t{j}"): work.remote(work_ms / 1000) for j in range(k)}
            with lock:
                refs.update(made)

        def started_of(prefix: str) -> dict[tuple[str, str], float]:
            with lock:
                mine = {k: r for k, r in refs.items() if k[0].startswith(prefix)}
            return dict(zip(mine, ray.get(list(mine.values()), timeout=60), strict=True))

        for shape in SHAPES:
            levels = out.setdefault(shape, {})
            for pct, rate in rates.items():
                name = f"ray-{shape}{pct}"
                lvl = run_level(
                    submit, started_of, name, rate, seconds, tick, pct, shape, work_ms / 1000
                )
                log(f"latency: ray {shape} {pct}% {lvl}")
                levels[f"{pct}%"] = lvl
                time.sleep(1.0)
    finally:
        ray.shutdown()
    return out


def _sleep_then_start(seconds: float) -> float:
    started = time.time()
    time.sleep(seconds)
    return started


def run(quick: bool, work_ms: float = 20.0, backlog: int = 0, ray: bool = False) -> dict[str, Any]:
    seconds = 6.0 if quick else 15.0
    tick = 0.05
    res: dict[str, Any] = {
        "benchmark": "latency",
        "agents": AGENTS,
        "work_ms": work_ms,
        "seconds_per_level": seconds,
        "tick_s": tick,
        "backlog_tasks": backlog,
        "shapes": {},
    }
    with Bench(coordinators=1, metrics=True) as b:
        b.spawn_agents(AGENTS, mode=f"sleep{work_ms:g}", processes=AGENTS)
        starts = Starts(b.run_dir)
        b.wait_agents(AGENTS)
        b.submit(to_spec("warm", [(f"w{i}", []) for i in range(16)]))
        b.wait_finished("warm", 60)
        cap = measure_capacity(b, starts, 600 if quick else 2000)
        res["capacity_tasks_per_s"] = round(cap, 1)
        res["capacity_bound_by_work"] = round(AGENTS / (work_ms / 1000), 1)
        log(f"latency: capacity {cap:.0f} tasks/s")
        if backlog:
            _backlog(b, backlog)
        time.sleep(1.0)
        for shape in SHAPES:
            levels = res.setdefault("shapes", {}).setdefault(shape, {})
            for pct_load in LOADS:
                samples = b.leader_samples()
                lvl = run_level(
                    _workhive_submit(b), starts.of, f"{shape}{pct_load}", cap * pct_load / 100,
                    seconds, tick, pct_load, shape, work_ms / 1000,
                )  # fmt: skip
                lvl["gc_pauses"] = _gc_pauses(samples, b.leader_samples())
                log(f"latency: {shape} {pct_load}% {lvl}")
                levels[f"{pct_load}%"] = lvl
                time.sleep(1.0)
    if ray:  # after workhive's cluster is gone: the machine is Ray's alone
        rates = {pct: res["capacity_tasks_per_s"] * pct / 100 for pct in LOADS}
        res["ray"] = run_ray(rates, seconds, tick, work_ms)
    res["levels"] = res.get("shapes", {}).get("ticks", {})  # the report's table and plot
    for shape, levels in res.get("shapes", {}).items():
        at50 = levels.get("50%", {}).get("from_submit_start", {})
        if at50.get("n"):
            res[f"{shape}_p50_le_5ms_at_50"] = at50["p50_ms"] <= 5.0
            res[f"{shape}_p99_le_20ms_at_50"] = at50["p99_ms"] <= 20.0
        ray50 = res.get("ray", {}).get(shape, {}).get("50%", {}).get("from_submit_start", {})
        if at50.get("n") and ray50.get("n"):
            for q in ("p50", "p99"):
                res[f"{shape}_{q}_vs_ray_at_50"] = round(at50[f"{q}_ms"] / ray50[f"{q}_ms"], 2)
    return res


def _extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work-ms", type=float, default=20.0)
    p.add_argument("--backlog", type=int, default=0, help="tasks queued that never start")
    p.add_argument("--ray", action="store_true", help="the same arrivals on Ray afterwards")


def main() -> None:
    a = parse_args(__doc__ or "", _extra)
    emit(run(a.quick, a.work_ms, a.backlog, a.ray), a.json)


if __name__ == "__main__":
    main()
