"""Schedule quality when estimates are wrong (issue 18), printing JSON.

Run from the repo root: ``nice -n 10 .venv/bin/python -m bench.quality [--quick]
[--families gpu,random,wf] [--policy default] [--time-box 1]``. Cases (see
docs/scheduling.md, "Schedule quality"): 6 plain + 2 gpu agents with 15 % gpu tasks and
priorities; random layered DAGs on 16 agents; WfCommons workflows (Montage,
Epigenomics, 1000Genome, Cycles, Seismology, BLAST, BWA, SoyKB, SRASearch; 250
and 1,000 tasks; estimate = mean runtime of the kind) on 4, 16 and 64 agents.
The scheduler sees only the estimates. Per case one JSON line: workhive's
makespan over the lower bound (``ratio``), over clairvoyant list scheduling
(``vs_clairvoyant``), and the plain online list scheduler on the same
estimates (``online_ratio``) and the same with ties between equal ranks broken
at random (``ties_ratio``, the mean over ``--ties`` orders: with estimate = kind
mean, which of the equal-looking tasks goes first is luck); then one summary
line per family. ``--draws N`` runs every generated graph with N draws of its
real durations (expected figures, not one draw); ``--forward`` adds
the online reference told what running tasks imply (``forward_*_ratio``,
``bench._quality_cases.forward_list_schedule``); ``--explain`` adds the
schedule's critical chain to each row (``bench._quality_cases.critical_chain``:
where the makespan went, and how long each link waited while ready).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from bench._quality_cases import (
    Case,
    critical_chain,
    forward_list_schedule,
    gpu_cases,
    list_schedule,
    lower_bound,
    random_cases,
    real_durations,
    redraw,
    wf_cases,
)
from workhive.coordinator.scheduling import PlannerConfig, SchedulerConfig, SimConfig, simulate


def run_case(
    case: Case,
    policy: str,
    time_box: float,
    ties: int = 0,
    explain: bool = False,
    forward: bool = False,
) -> dict[str, Any]:
    """Simulate one case and compare it with the references."""
    spec = case.spec
    lb = lower_bound(spec)
    est = {t.id: (t.estimate or 1.0) for t in spec.tasks}
    real = dict(zip((t.id for t in spec.tasks), real_durations(spec), strict=True))
    online = list_schedule(spec, lambda t: est[t.id])
    clair = list_schedule(spec, lambda t: real[t.id])
    cfg = SimConfig(
        scheduler=SchedulerConfig(policy=policy),
        planner=PlannerConfig(time_box=time_box, workers=1) if time_box > 0 else None,
        record=explain,
    )
    r = simulate(spec, cfg)
    tied = [list_schedule(spec, lambda t: est[t.id], tie_seed=k) for k in range(ties)]
    row: dict[str, Any] = {
        "family": case.family,
        "case": case.name,
        "tasks": len(spec.tasks),
        "makespan": round(r.makespan, 3),
        "lower_bound": round(lb, 3),
        "ratio": round(r.makespan / lb, 5),
        "online_ratio": round(online / lb, 5),
        "clairvoyant_ratio": round(clair / lb, 5),
        "vs_clairvoyant": round(r.makespan / clair, 5),
        "plan": r.plan_method,
        "replans": r.replans,
        "steals": r.steals,
        "outcome": r.outcome,
    }
    if tied:
        row["ties_ratio"] = round(statistics.fmean(tied) / lb, 5)
    if forward:
        for how in ("elapsed", "oracle"):
            fwd = forward_list_schedule(spec, how, case.sigma)
            row[f"forward_{how}_ratio"] = round(fwd / lb, 5)
    if explain:
        chain = critical_chain(spec, r.schedule)
        row["chain_waited"] = round(sum(c.waited for c in chain), 3)
        row["chain"] = [
            [
                c.task,
                c.kind,
                round(c.estimate, 3),
                round(c.real, 3),
                round(c.start, 3),
                round(c.waited, 3),
            ]
            for c in chain
        ]
    return row


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and worst per family."""
    out = []
    for fam in dict.fromkeys(r["family"] for r in rows):
        rs = [r for r in rows if r["family"] == fam]
        out.append(
            {
                "family": fam,
                "cases": len(rs),
                "mean_ratio": round(statistics.fmean(r["ratio"] for r in rs), 4),
                "worst_ratio": round(max(r["ratio"] for r in rs), 4),
                "online_mean": round(statistics.fmean(r["online_ratio"] for r in rs), 4),
                "online_worst": round(max(r["online_ratio"] for r in rs), 4),
                "clairvoyant_mean": round(statistics.fmean(r["clairvoyant_ratio"] for r in rs), 4),
                **{
                    f"{k[:-6]}_mean": round(statistics.fmean(r[k] for r in rs), 4)
                    for k in ("forward_elapsed_ratio", "forward_oracle_ratio")
                    if all(k in r for r in rs)
                },
                **(
                    {"ties_mean": round(statistics.fmean(r["ties_ratio"] for r in rs), 4)}
                    if all("ties_ratio" in r for r in rs)
                    else {}
                ),
                "mean_minus_clairvoyant": round(
                    statistics.fmean(r["ratio"] - r["clairvoyant_ratio"] for r in rs), 4
                ),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small subset (under a minute)")
    ap.add_argument("--families", default="gpu,random,wf")
    ap.add_argument("--policy", default="default")
    ap.add_argument("--time-box", type=float, default=1.0, help="CP-SAT seconds (0: no planner)")
    ap.add_argument("--seed", type=int, default=18, help="seed of the generated cases")
    ap.add_argument("--count", type=int, default=0, help="generated graphs per family")
    ap.add_argument("--recipes", default="", help="comma-separated subset of the WfCommons recipes")
    ap.add_argument("--agents", default="4,16,64", help="agent counts of the workflows")
    ap.add_argument("--draws", type=int, default=1, help="real-duration draws per generated graph")
    ap.add_argument("--ties", type=int, default=8, help="random tie orders of the online reference")
    ap.add_argument("--explain", action="store_true", help="add each schedule's critical chain")
    ap.add_argument(
        "--forward",
        action="store_true",
        help="add the online reference told the running tasks' ends (elapsed, oracle)",
    )
    a = ap.parse_args(argv)
    fams = set(a.families.split(","))
    count = a.count or (4 if a.quick else 12)
    cases: list[Case] = []
    if "gpu" in fams:
        cases += [redraw(c, d) for c in gpu_cases(count, a.seed) for d in range(a.draws)]
    if "random" in fams:
        cases += [redraw(c, d) for c in random_cases(count, a.seed + 1) for d in range(a.draws)]
    if "wf" in fams:
        sizes = (250,) if a.quick else (250, 1000)
        agents = tuple(int(x) for x in a.agents.split(","))
        cases += [
            c
            for c in wf_cases(sizes, agents, a.seed)
            if not a.recipes or c.name.split()[0] in a.recipes.split(",")
        ]
    t0 = time.perf_counter()
    rows = []
    for c in cases:
        row = run_case(c, a.policy, a.time_box, a.ties, a.explain, a.forward)
        rows.append(row)
        print(json.dumps(row), flush=True)
    for s in summarise(rows):
        print(json.dumps({"summary": s}), flush=True)
    print(json.dumps({"seconds": round(time.perf_counter() - t0, 1), "policy": a.policy}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
