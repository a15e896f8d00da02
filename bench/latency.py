"""Ready-to-start latency at ~10/50/90% of measured capacity (open loop).

``python -m bench.latency [--json] [--quick]``

One coordinator process on an embedded etcd; 8 SDK agents (1 slot each) as
threads in this process, so handler-start times and submit times share one
monotonic clock. Each task sleeps ``--work-ms`` (default 20 ms).

1. Capacity: a burst of independent tasks, completion rate = capacity.
2. For each load level, every ``tick`` seconds one small project of
   independent tasks is submitted (Poisson-distributed count, mean
   rate x tick). Its tasks are ready when the project becomes visible, which
   happens inside the submit call: latency is measured from the submit call's
   start (upper bound) and from its return (lower bound) to the handler start.
"""

from __future__ import annotations

import argparse
import math
import random
import threading
import time
from typing import Any

from bench._common import AgentPool, Bench, emit, log, parse_args, summary_ms, to_spec

AGENTS = 8


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


def measure_capacity(b: Bench, pool: AgentPool, n: int) -> float:
    spec = to_spec("cap", [(f"t{i}", []) for i in range(n)])
    t0 = time.monotonic()
    b.submit(spec)
    deadline = t0 + 120
    while True:
        with pool.log.lock:
            done = sum(1 for s in pool.log.starts if s[1] == "cap")
        if done >= n or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    # rate of starts over the burst (the last task's start ends the burst)
    with pool.log.lock:
        times = sorted(s[0] for s in pool.log.starts if s[1] == "cap")
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def run_level(
    b: Bench, pool: AgentPool, name: str, rate: float, seconds: float, tick: float, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    ready_start: dict[tuple[str, str], float] = {}
    ready_end: dict[tuple[str, str], float] = {}
    submitted = 0
    t_begin = time.monotonic()
    i = 0
    next_tick = t_begin
    while time.monotonic() - t_begin < seconds:
        k = _poisson(rng, rate * tick)
        if k:
            pid = f"{name}-{i}"
            spec = to_spec(pid, [(f"t{j}", []) for j in range(k)])
            t0 = time.monotonic()
            b.submit(spec)
            t1 = time.monotonic()
            for j in range(k):
                ready_start[(pid, f"t{j}")] = t0
                ready_end[(pid, f"t{j}")] = t1
            submitted += k
        i += 1
        next_tick += tick
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    # wait for the tail to start
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with pool.log.lock:
            started = {(s[1], s[2]): s[0] for s in pool.log.starts if s[1].startswith(name + "-")}
        if len(started) >= submitted:
            break
        time.sleep(0.05)
    lat_hi = [started[k] - ready_start[k] for k in started if k in ready_start]
    lat_lo = [max(0.0, started[k] - ready_end[k]) for k in started if k in ready_end]
    return {
        "offered_tasks_per_s": round(rate, 1),
        "achieved_tasks_per_s": round(submitted / seconds, 1),
        "submitted": submitted,
        "started": len(started),
        "from_submit_start": summary_ms(lat_hi),
        "from_submit_return": summary_ms(lat_lo),
    }


def run(quick: bool, work_ms: float = 20.0) -> dict[str, Any]:
    seconds = 6.0 if quick else 15.0
    tick = 0.05
    res: dict[str, Any] = {
        "benchmark": "latency",
        "agents": AGENTS,
        "work_ms": work_ms,
        "seconds_per_level": seconds,
        "tick_s": tick,
        "levels": {},
    }
    with Bench(coordinators=1) as b:
        pool = AgentPool(b.addresses, AGENTS, work=lambda _t: time.sleep(work_ms / 1000))
        try:
            pool.start()
            b.wait_agents(AGENTS)
            b.submit(to_spec("warm", [(f"w{i}", []) for i in range(16)]))
            b.wait_finished("warm", 60)
            cap = measure_capacity(b, pool, 600 if quick else 2000)
            res["capacity_tasks_per_s"] = round(cap, 1)
            res["capacity_bound_by_work"] = round(AGENTS / (work_ms / 1000), 1)
            log(f"latency: capacity {cap:.0f} tasks/s")
            time.sleep(1.0)
            for pct_load in (10, 50, 90):
                lvl = run_level(
                    b, pool, f"l{pct_load}", cap * pct_load / 100, seconds, tick, pct_load
                )
                log(f"latency: {pct_load}% {lvl}")
                res["levels"][f"{pct_load}%"] = lvl
                time.sleep(1.0)
        finally:
            pool.stop()
    at50 = res["levels"].get("50%", {}).get("from_submit_start", {})
    if at50.get("n"):
        res["target_p50_le_5ms_at_50"] = at50["p50_ms"] <= 5.0
        res["target_p99_le_50ms_at_50"] = at50["p99_ms"] <= 50.0
    _ = threading  # agents run in threads of this process
    return res


def _extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work-ms", type=float, default=20.0)


def main() -> None:
    a = parse_args(__doc__ or "", _extra)
    emit(run(a.quick, a.work_ms), a.json)


if __name__ == "__main__":
    main()
