"""Leader overhead of an open dashboard, on a 10,000-task project (same run).

One leader (dashboard and /metrics on), 8 agents (10 ms of work per task), a
10k-task DAG of wide layers and chains. While the project runs, windows of
``--window`` seconds follow the pattern closed, open, open, closed (ABBA, so
a linear drift of the project cancels within each block): dashboard
*closed* (nobody connected) and *open* (a viewer streaming ``/api/v1/events?project=...``, polling
``/api/v1/status`` every second and re-reading the whole project every 5 s,
like a page that reloads). Alternating inside one run cancels most of the
drift of the project and of the shared machine.

The leader runs as ``bench._timed_coordinator`` (the production command
plus two histograms on /metrics): the wall time of every leader turn and
the lag of a 10 ms sleep on its event loop, differenced per window; plus
the completions per second of each window. Output: JSON with per-window
figures and the open/closed ratio (target: within 5 %). docs/dashboard.md
("Cost to the leader") reports a run.

    nice -n 10 .venv/bin/python -m bench.dashboard_overhead [--quick] [--json]
"""

from __future__ import annotations

import contextlib
import json
import statistics
import sys
import threading
import time
import urllib.request
from typing import Any

import psutil

from bench._common import Bench, emit, log, mixed_dag, parse_args, to_spec
from bench.stealing import _hist_quantile, _histogram
from workhive.coordinator.local_cluster import processes
from workhive.coordinator.local_cluster.ports import free_port

TURN = "workhive_bench_leader_turn_seconds"
LAG = "workhive_bench_loop_lag_seconds"
# the leader runs with the benchmark's turn and loop-lag histograms (bench._timed_coordinator)
processes.CLI = [sys.executable, "-m", "bench._timed_coordinator"]


class Viewer:
    """An open dashboard page: the event stream plus polling (two threads)."""

    def __init__(self, port: int, pid: str) -> None:
        self.base = f"http://127.0.0.1:{port}/api/v1/"
        self.pid = pid
        self.stop_flag = threading.Event()
        self.events = 0
        self.bytes = 0
        self.polls = 0
        self.frame_costs: list[float] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self.stop_flag.clear()
        self._threads = [
            threading.Thread(target=self._stream, daemon=True),
            threading.Thread(target=self._poll, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self.stop_flag.set()
        for t in self._threads:
            t.join(timeout=5)

    def _stream(self) -> None:
        with urllib.request.urlopen(f"{self.base}events?project={self.pid}", timeout=30) as r:
            while not self.stop_flag.is_set():
                line = r.readline()
                if not line:
                    return
                self.bytes += len(line)
                if line.startswith(b"event:"):
                    self.events += 1

    def _poll(self) -> None:
        n = 0
        while not self.stop_flag.wait(1.0):
            paths = ["status"] + ([f"projects/{self.pid}"] if n % 5 == 0 else [])
            for p in paths:
                with contextlib.suppress(OSError), urllib.request.urlopen(self.base + p) as r:
                    body = r.read()
                    self.bytes += len(body)
                    self.polls += 1
                    if p == "status":
                        self.frame_costs.append(json.loads(body)["frame_cost_ms"])
            n += 1


def _quantile(h0: dict[str, float], h1: dict[str, float], q: float) -> float | None:
    """The ``q`` quantile (bucket upper bound, ms) of what was observed between h0 and h1."""
    diff = {k: h1[k] - h0.get(k, 0.0) for k in h1}
    le = _hist_quantile(diff, q)
    return None if le is None else round(1000 * le, 2)


def _window(
    b: Bench, mport: int, pid: str, seconds: float, viewer: Viewer | None
) -> dict[str, Any]:
    leader = psutil.Process(b.leader().popen.pid)  # type: ignore[union-attr]
    me = psutil.Process()

    def read() -> tuple[dict[str, float], dict[str, float], int, float]:
        turns, lag = _histogram(mport, TURN), _histogram(mport, LAG)
        return turns, lag, b.counts(pid).get("succeeded", 0), time.monotonic()

    def cpu(p: psutil.Process) -> float:
        t = p.cpu_times()
        return float(t.user + t.system)

    t0, l0, c0, w0 = read()
    cpu0, me0 = cpu(leader), cpu(me)
    if viewer is not None:
        viewer.start()
    time.sleep(seconds)
    if viewer is not None:
        viewer.stop()
    cpu1, me1 = cpu(leader), cpu(me)
    t1, l1, c1, w1 = read()
    n = t1.get("count", 0.0) - t0.get("count", 0.0)
    total = t1.get("sum", 0.0) - t0.get("sum", 0.0)
    lag_n = l1.get("count", 0.0) - l0.get("count", 0.0)
    lag_sum = l1.get("sum", 0.0) - l0.get("sum", 0.0)
    return {
        "dashboard": "open" if viewer is not None else "closed",
        "turns": int(n),
        "turn_mean_ms": round(1000 * total / n, 3) if n else None,
        "turn_p50_ms": _quantile(t0, t1, 0.5),
        "turn_p99_ms": _quantile(t0, t1, 0.99),
        "loop_lag_mean_ms": round(1000 * lag_sum / lag_n, 3) if lag_n else None,
        "loop_lag_p99_ms": _quantile(l0, l1, 0.99),
        "completions_per_s": round((c1 - c0) / (w1 - w0), 1),
        "leader_cpu_pct": round(100 * (cpu1 - cpu0) / (w1 - w0), 1),
        "bench_process_cpu_pct": round(100 * (me1 - me0) / (w1 - w0), 1),
        "_n": n,
        "_sum": total,
        "_lag_n": lag_n,
        "_lag_sum": lag_sum,
    }


def run(quick: bool, window: float) -> dict[str, Any]:
    n = 10_000
    dport = free_port()
    pid = "dash"
    with Bench(
        coordinators=1, coordinator_args=["--dashboard-port", str(dport)], metrics=True
    ) as b:
        mport = next(iter(b.metrics_ports.values()))
        b.spawn_agents(8, mode="sleep10", processes=2)
        b.wait_agents(8)
        b.submit(to_spec(pid, mixed_dag(n)))
        time.sleep(2.0)  # warm-up: first claims, plan
        viewer = Viewer(dport, pid)
        windows: list[dict[str, Any]] = []
        pattern = ("closed", "open", "open", "closed")  # ABBA: a linear drift cancels
        while True:
            opened = pattern[len(windows) % 4] == "open"
            c = b.counts(pid)
            if sum(c.get(s, 0) for s in ("succeeded", "failed", "cancelled")) >= n:
                break
            w = _window(b, mport, pid, window, viewer if opened else None)
            log(
                f"{w['dashboard']:6} turn {w['turn_mean_ms']} ms (p99 {w['turn_p99_ms']}), "
                f"loop lag {w['loop_lag_mean_ms']} ms, {w['completions_per_s']}/s, "
                f"leader cpu {w['leader_cpu_pct']} %, bench cpu {w['bench_process_cpu_pct']} %"
            )
            windows.append(w)
            if quick and len(windows) >= 8:
                break
        b.wait_finished(pid, 600, poll=0.5)
    keys = ("turn_mean_ms", "loop_lag_mean_ms", "completions_per_s", "leader_cpu_pct")
    blocks = []  # complete ABBA blocks of full windows (the tail window is partial)
    for i in range(0, len(windows) - 3, 4):
        block = windows[i : i + 4]
        if all(w["_n"] >= 50 for w in block):
            blocks.append(block)

    def mean(ws: list[dict[str, Any]], key: str) -> float:
        vals = [w[key] for w in ws if w[key] is not None]
        return sum(vals) / len(vals) if vals else 0.0

    agg: dict[str, dict[str, float]] = {}
    for kind in ("closed", "open"):
        ws = [w for blk in blocks for w in blk if w["dashboard"] == kind]
        agg[kind] = {"windows": len(ws), **{k: round(mean(ws, k), 3) for k in keys}}
    per_block = []
    for blk in blocks:
        c = mean([w for w in blk if w["dashboard"] == "closed"], "turn_mean_ms")
        o = mean([w for w in blk if w["dashboard"] == "open"], "turn_mean_ms")
        per_block.append(round(100 * (o - c) / c, 2) if c else 0.0)
    for w in windows:
        for k in ("_n", "_sum", "_lag_n", "_lag_sum"):
            w.pop(k)

    def change(key: str) -> float | None:
        c, o = agg["closed"][key], agg["open"][key]
        return round(100 * (o - c) / c, 2) if c else None

    return {
        "benchmark": "dashboard_overhead",
        "tasks": n,
        "agents": 8,
        "window_s": window,
        "closed": agg["closed"],
        "open": agg["open"],
        "turn_latency_change_pct": change("turn_mean_ms"),
        "turn_latency_change_pct_median_block": round(statistics.median(per_block), 2)
        if per_block
        else None,
        "turn_latency_change_pct_per_block": per_block,
        "loop_lag_change_pct": change("loop_lag_mean_ms"),
        "throughput_change_pct": change("completions_per_s"),
        "viewer": {"events": viewer.events, "polls": viewer.polls, "bytes": viewer.bytes},
        "frame_cost_ms": {
            "median": statistics.median(viewer.frame_costs) if viewer.frame_costs else None,
            "max": max(viewer.frame_costs, default=None),
        },
        "windows": windows,
    }


def main() -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        lambda p: p.add_argument("--window", type=float, default=1.5, help="seconds per window"),
    )
    res = run(args.quick, args.window)
    emit(res, args.json)
    if not args.json:
        print(json.dumps({"turn_latency_change_pct": res["turn_latency_change_pct"]}))


if __name__ == "__main__":
    main()
