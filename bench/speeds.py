"""Schedule quality on agents of different speeds (issue 18), printing JSON.

Run from the repo root: ``nice -n 10 .venv/bin/python -m bench.speeds [--count N]
[--seed S]``. Random layered DAGs (``bench._quality_cases.layered_dag``: estimates
1-100 s, real durations off by log-normal noise, sigma 0.2-0.8), narrow (2-10
tasks per layer, the critical path binds) and wide (4-30 per layer, the work
binds), on 8 simulated agents some of which take longer than others
(``SimConfig.speeds``). The scheduler is told nothing of the speeds. Per case one
JSON line with the makespan over the lower bound (critical path on the fastest
agent, work over every agent's rate): ``learned`` (``default``, learning each
agent's speed from its completions, ``scheduling/agent_speeds.py``), ``blind``
(the same with ``agent_speeds`` off) and ``sorted`` (blind, but the fleet joined
fastest first, so that every tie goes to a faster agent: what knowing the speeds
buys a list scheduler that breaks ties by join order); then one summary line
per fleet and graph shape. Fleets: ``slow-first`` (4 agents 2x slower joined
first), ``interleaved`` (2x slower every other one), ``one-3x`` (one agent 3x
slower, joined first), ``equal`` (all alike: nothing to gain, nothing may be
lost).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from typing import Any

from bench._quality_cases import layered_dag
from workhive.coordinator.model import AgentGroup, ProjectSpec
from workhive.coordinator.scheduling import SchedulerConfig, SimConfig, simulate

FLEETS: dict[str, tuple[float, ...]] = {
    "slow-first": (2, 2, 2, 2, 1, 1, 1, 1),
    "interleaved": (2, 1, 2, 1, 2, 1, 2, 1),
    "one-3x": (3, 1, 1, 1, 1, 1, 1, 1),
    "equal": (1, 1, 1, 1, 1, 1, 1, 1),
}
SHAPES = {"narrow": (2, 10), "wide": (4, 30)}


def _ratio(spec: ProjectSpec, speeds: tuple[float, ...], learn: bool) -> float:
    cfg = SimConfig(speeds=speeds, scheduler=SchedulerConfig(agent_speeds=learn), planner=None)
    r = simulate(spec, cfg)
    return r.makespan / r.lower_bound


def run(count: int, seed: int) -> list[dict[str, Any]]:
    rows = []
    for shape, width in SHAPES.items():
        rng = random.Random(seed)
        for k in range(count):
            n = rng.randint(150, 600)
            sigma = rng.uniform(0.2, 0.8)
            tasks = tuple(layered_dag(rng, n, sigma, width=width))
            spec = ProjectSpec(id=f"{shape}{k}", tasks=tasks, agents=(AgentGroup(count=8),))
            for fleet, speeds in FLEETS.items():
                row = {
                    "fleet": fleet,
                    "shape": shape,
                    "case": f"{shape}{k} n={n} s={sigma:.2f}",
                    "learned": round(_ratio(spec, speeds, True), 4),
                    "blind": round(_ratio(spec, speeds, False), 4),
                    "sorted": round(_ratio(spec, tuple(sorted(speeds)), False), 4),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for fleet in FLEETS:
        for shape in SHAPES:
            rs = [r for r in rows if r["fleet"] == fleet and r["shape"] == shape]
            out.append(
                {"fleet": fleet, "shape": shape, "cases": len(rs)}
                | {
                    f"{k}_{how}": round(agg(r[k] for r in rs), 4)
                    for k in ("learned", "blind", "sorted")
                    for how, agg in (("mean", statistics.fmean), ("worst", max))
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.speeds", description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=10, help="graphs per shape")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = run(a.count, a.seed)
    for s in summarise(rows):
        print(json.dumps({"summary": s}), flush=True)
    print(json.dumps({"seconds": round(time.perf_counter() - t0, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
