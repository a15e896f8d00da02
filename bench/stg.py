"""STG benchmark: every graph x P in {2,4,8,16} against the best known makespans.

Run from the repo root: ``.venv/bin/python -m bench.stg [--time-box 1] [--limit N]
[--policies default,critical-path] [--sizes 50,100] [--procs 2,4]``.
Prints one JSON object per (size, P, policy) class with the mean and worst
ratio makespan / best known, how many plans were proved optimal and how many
cases beat the best known upper bound; then writes ``bench/results/stg.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from workhive.coordinator.project_files import load_best_known, load_stg
from workhive.coordinator.scheduling import (
    POLICIES,
    PlannerConfig,
    SchedulerConfig,
    SimConfig,
    simulate,
)

_DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "stg"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.stg", description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=_DEFAULT_DATA)
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--sizes", default="50,100")
    ap.add_argument("--procs", default="2,4,8,16")
    ap.add_argument("--limit", type=int, default=0, help="graphs per size (0: all 180)")
    ap.add_argument("--time-box", type=float, default=2.0, help="CP-SAT seconds per case")
    ap.add_argument("--workers", type=int, default=2, help="CP-SAT workers")
    ap.add_argument("--prefetch", type=int, default=1)
    ap.add_argument("--noise", type=float, default=0.0, help="log-normal sigma on real durations")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench/results/stg.md"))
    ap.add_argument("--worst", type=int, default=5, help="list the N worst cases per policy")
    a = ap.parse_args(argv)
    policies = [p for p in a.policies.split(",") if p]
    for p in policies:
        if p not in POLICIES:
            ap.error(f"unknown policy {p!r}")
    best = load_best_known(a.data)
    planner = PlannerConfig(time_box=a.time_box, workers=a.workers)
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    worst: dict[str, list[tuple[float, str, int]]] = {p: [] for p in policies}
    for size in a.sizes.split(","):
        files = sorted((a.data / size).glob("*.stg"))
        if a.limit:
            files = files[: a.limit]
        specs = [(f, load_stg(f)) for f in files]
        for procs in (int(x) for x in a.procs.split(",")):
            for pol in policies:
                ratios: list[float] = []
                lb_ratios: list[float] = []
                proved = better = unproven_cases = 0
                tc = time.perf_counter()
                for f, spec in specs:
                    bk = best[(f"{size}/{f.name}", procs)]
                    cfg = SimConfig(
                        agents=procs,
                        prefetch=a.prefetch,
                        noise=a.noise,
                        seed=a.seed,
                        scheduler=SchedulerConfig(policy=pol),
                        planner=planner if pol == "default" else None,
                    )
                    r = simulate(spec, cfg)
                    ratio = r.makespan / bk.value
                    ratios.append(ratio)
                    lb_ratios.append(r.ratio)
                    proved += int(r.plan_optimal and r.makespan <= (r.planned_makespan or 0) + 1e-9)
                    better += int(r.makespan < bk.value - 1e-9)
                    unproven_cases += int(not bk.proven)
                    worst[pol].append((ratio, f"{size}/{f.name}", procs))
                row = {
                    "size": int(size),
                    "procs": procs,
                    "policy": pol,
                    "cases": len(ratios),
                    "mean_ratio": round(statistics.fmean(ratios), 5),
                    "worst_ratio": round(max(ratios), 5),
                    "mean_ratio_to_lower_bound": round(statistics.fmean(lb_ratios), 5),
                    "proved_optimal": proved,
                    "better_than_best_known": better,
                    "best_known_unproven": unproven_cases,
                    "seconds": round(time.perf_counter() - tc, 2),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    total = time.perf_counter() - t0
    summary = {
        "total_seconds": round(total, 1),
        "time_box": a.time_box,
        "workers": a.workers,
        "noise": a.noise,
        "policies": policies,
    }
    for pol in policies:
        rs = [r for r in rows if r["policy"] == pol]
        if rs:
            n = sum(r["cases"] for r in rs)
            summary[pol] = {
                "mean_ratio": round(sum(r["mean_ratio"] * r["cases"] for r in rs) / n, 5),
                "worst_ratio": max(r["worst_ratio"] for r in rs),
                "worst_class_mean": max(r["mean_ratio"] for r in rs),
                "mean_ratio_to_lower_bound": round(
                    sum(r["mean_ratio_to_lower_bound"] * r["cases"] for r in rs) / n, 5
                ),
            }
    print(json.dumps({"summary": summary}), flush=True)
    _write_md(a.out, rows, summary, worst, a)
    return 0


def _write_md(
    out: Path,
    rows: list[dict[str, Any]],
    summary: dict[str, Any],
    worst: dict[str, list[tuple[float, str, int]]],
    a: argparse.Namespace,
) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# STG benchmark (`python -m bench.stg`)",
        "",
        "Makespan of the simulated run (production scheduler, exact durations, prefetch "
        f"{a.prefetch}) divided by the best known makespan (proven optimum, or best known "
        "upper bound where unproven). `default` plans with CP-SAT "
        f"(time box {a.time_box:g} s, {a.workers} workers) and follows the plan; the other "
        "policies are pure list heuristics.",
        "",
        f"Total runtime: {summary['total_seconds']} s. Command: `.venv/bin/python -m bench.stg "
        f"--time-box {a.time_box:g} --workers {a.workers}"
        + (f" --limit {a.limit}" if a.limit else "")
        + f" --policies {','.join(summary['policies'])}`",
        "",
        "| size | P | policy | cases | mean ratio | worst ratio | proved optimal | "
        "better than best known |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['procs']} | {r['policy']} | {r['cases']} | "
            f"{r['mean_ratio']:.5f} | {r['worst_ratio']:.5f} | {r['proved_optimal']} | "
            f"{r['better_than_best_known']} |"
        )
    lines += ["", "## Overall", "", "| policy | mean ratio | worst class mean | worst case |"]
    lines.append("|---|---:|---:|---:|")
    for pol in summary["policies"]:
        s = summary.get(pol)
        if s:
            lines.append(
                f"| {pol} | {s['mean_ratio']:.5f} | {s['worst_class_mean']:.5f} | "
                f"{s['worst_ratio']:.5f} |"
            )
    lines += ["", "## Worst cases", ""]
    for pol, cases in worst.items():
        top = sorted(cases, reverse=True)[: a.worst]
        lines.append(f"- {pol}: " + ", ".join(f"{n} P={p} ({r:.4f})" for r, n, p in top))
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
