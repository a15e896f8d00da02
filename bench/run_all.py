"""Run every benchmark, write ``bench/results/latest.json`` and ``report.md`` with PNG plots.

``python -m bench.run_all [--quick] [--only a,b] [--skip a,b]`` (``make bench ARGS=--quick``)

Each benchmark runs in its own subprocess (``python -m bench.<name> --json``)
with a time limit, so a crash or hang in one cannot leave processes behind or
stop the others; its JSON line is collected. The report compares figures
measured side by side in this one run and checks them against issue 8's
targets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
ORDER = [
    "throughput",
    "latency",
    "failover",
    "dead_agent",
    "stealing",
    "scale",
    "etcd_claims",
    "stg",
]
TIMEOUT = {"quick": 240, "full": 900}


def _args_for(name: str, quick: bool) -> list[str]:
    if name == "stg":
        # the committed full STG study lives in results/stg.md; this is a small re-check
        return [
            "--limit",
            "2" if quick else "10",
            "--time-box",
            "0.5",
            "--out",
            str(RESULTS / "stg_run.md"),
        ]
    if name == "etcd_claims":
        return ["--start-etcd", "--json", "--tasks", "5000" if quick else "20000"]
    return ["--json"] + (["--quick"] if quick else [])


def run_one(name: str, quick: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", f"bench.{name}", *_args_for(name, quick)]
    t0 = time.monotonic()
    print(f"== {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
        start_new_session=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        out, _ = proc.communicate(timeout=TIMEOUT["quick" if quick else "full"])
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"benchmark": name, "error": "timed out", "command": " ".join(cmd[1:])}
    elapsed = round(time.monotonic() - t0, 1)
    objs = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                objs.append(json.loads(line))
            except ValueError:
                continue
    if proc.returncode != 0 or not objs:
        return {
            "benchmark": name,
            "error": f"exit code {proc.returncode}",
            "command": "python " + " ".join(cmd[1:]),
            "elapsed_s": elapsed,
        }
    summaries = [o for o in objs if "summary" in o]
    if summaries:
        res = {"benchmark": name, **summaries[-1], "records": len(objs) - 1}
    else:
        res = objs[0] if len(objs) == 1 else {"benchmark": name, "records": objs}
    res.setdefault("benchmark", name)
    res["command"] = "python " + " ".join(cmd[1:])
    res["elapsed_s"] = elapsed
    return res


# ---------------------------------------------------------------- plots


def _plots(results: dict[str, dict[str, Any]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    tp = results.get("throughput", {})
    if "workhive" in tp and "tasks_per_s" in tp.get("dask", {}):
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
        arms = [("workhive", "workhive"), ("dask", "dask.distributed"), ("ray", "Ray")]
        shown = [(k, n) for k, n in arms if "tasks_per_s" in tp.get(k, {})]
        names = [n for _, n in shown]
        colors = ["tab:orange", "tab:blue", "tab:green"][: len(shown)]
        axes[0].bar(names, [tp[k]["tasks_per_s"] for k, _ in shown], color=colors)
        axes[0].set_ylabel("tasks/s")
        axes[0].set_title(f"{tp['tasks']}-task no-op DAG, 8 agents")
        axes[1].bar(names, [tp[k]["chain_step_ms"] for k, _ in shown], color=colors)
        axes[1].set_ylabel("ms per step")
        axes[1].set_title(f"chain of {tp['chain_length']}")
        fig.tight_layout()
        fig.savefig(RESULTS / "throughput.png", dpi=100)
        plt.close(fig)
        made.append("throughput.png")
    lat = results.get("latency", {})
    if lat.get("levels"):
        fig, ax = plt.subplots(figsize=(6, 3.2))
        lv = list(lat["levels"])
        for key, style in (("p50_ms", "o-"), ("p99_ms", "s-")):
            ax.plot(
                lv,
                [lat["levels"][x]["from_submit_return"].get(key) for x in lv],
                style,
                label=f"{key[:3]} (from ready)",
            )
            ax.plot(
                lv,
                [lat["levels"][x]["from_submit_start"].get(key) for x in lv],
                style,
                alpha=0.4,
                label=f"{key[:3]} (from submit call start)",
            )
        ax.axhline(5, color="green", ls=":", lw=1)
        ax.axhline(50, color="red", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("load (of measured capacity)")
        ax.set_ylabel("ready -> start, ms")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(RESULTS / "latency.png", dpi=100)
        plt.close(fig)
        made.append("latency.png")
    fo = results.get("failover", {})
    if fo.get("modes"):
        fig, ax = plt.subplots(figsize=(6, 3.2))
        modes = list(fo["modes"])
        data = [fo["modes"][m]["samples_s"] or [0] for m in modes]
        ax.boxplot(data, showfliers=True)
        ax.set_xticks(range(1, len(modes) + 1), modes, fontsize=8)
        ax.axhline(15, color="gray", ls="--", lw=1, label="client-go lease 15 s")
        ax.set_yscale("log")
        ax.set_ylabel("signal -> first new assignment, s")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(RESULTS / "failover.png", dpi=100)
        plt.close(fig)
        made.append("failover.png")
    return made


# ---------------------------------------------------------------- report


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "**holds**" if v else "**missed**"
    return str(v)


def _report(results: dict[str, dict[str, Any]], quick: bool, wall: float, plots: list[str]) -> str:
    L: list[str] = []
    L.append("# workhive benchmarks")
    L.append("")
    L.append(
        f"Run: {time.strftime('%Y-%m-%d %H:%M:%S')}, mode {'quick' if quick else 'full'}, "
        f"{wall:.0f} s, {platform.python_version()}, {os.cpu_count()} CPUs "
        "(shared with other work: compare ratios measured in this run, not absolutes)."
    )
    L.append("")
    L.append(
        "Command: `make bench" + (" ARGS=--quick" if quick else "") + "`; each section names "
        "the module command that produced it."
    )
    L.append("")
    tp = results.get("throughput", {})
    if tp:
        L.append("## Throughput (`" + tp.get("command", "") + "`)")
        if "error" in tp:
            L.append(f"error: {tp['error']}")
        else:
            w, d, r = tp["workhive"], tp.get("dask", {}), tp.get("ray", {})
            L.append("")
            L.append("| | workhive | dask.distributed | Ray | vs dask | vs Ray |")
            L.append("|---|---|---|---|---|---|")
            L.append(
                f"| {tp['tasks']}-task DAG, tasks/s | {w['tasks_per_s']} | "
                f"{d.get('tasks_per_s', 'n/a')} | {r.get('tasks_per_s', 'n/a')} | "
                f"{tp.get('ratio_tasks_per_s', 'n/a')} | "
                f"{tp.get('ratio_tasks_per_s_vs_ray', 'n/a')} |"
            )
            L.append(
                f"| chain of {tp['chain_length']}, ms/step | {w['chain_step_ms']} | "
                f"{d.get('chain_step_ms', 'n/a')} | {r.get('chain_step_ms', 'n/a')} | "
                f"{tp.get('ratio_chain_step', 'n/a')} | "
                f"{tp.get('ratio_chain_step_vs_ray', 'n/a')} |"
            )
            wc, dc = w.get("cpu_ms_per_task", {}), d.get("cpu_ms_per_task", {})
            if wc and dc:
                parts = ", ".join(f"{k} {v}" for k, v in wc.items() if k != "total")
                dparts = ", ".join(f"{k} {v}" for k, v in dc.items() if k != "total")
                L.append(
                    f"| CPU ms per DAG task, all processes | {wc['total']} ({parts}) | "
                    f"{dc['total']} ({dparts}; the scheduler runs in the bench process) | "
                    f"{r.get('cpu_ms_per_task', {}).get('total', 'n/a')} | "
                    f"{round(wc['total'] / dc['total'], 2) if dc['total'] else 'n/a'} | |"
                )
            L.append("")
            L.append(
                f"Targets: >= 3x dask {_fmt(tp.get('target_3x_dask'))}, >= 1x Ray "
                f"{_fmt(tp.get('target_1x_ray'))}, chain step no worse than Ray "
                f"{_fmt(tp.get('target_chain_no_worse_than_ray'))}. workhive submit took "
                f"{w.get('submit_seconds')} s of the DAG time; every assignment is a claim "
                "committed to etcd before the agent runs it."
            )
        L.append("")
    lat = results.get("latency", {})
    shapes = lat.get("shapes") or ({"ticks": lat["levels"]} if lat.get("levels") else {})
    if shapes:
        L.append("## Ready-to-start latency (`" + lat.get("command", "") + "`)")
        L.append("")
        L.append(
            f"Measured capacity {lat.get('capacity_tasks_per_s')} tasks/s "
            f"({lat['agents']} agents, {lat['work_ms']} ms tasks)."
        )
        L.append("")
        L.append(
            "| arrivals | load | offered/s | p50 ms | p99 ms | p50 ms (from submit start) | "
            "p99 ms (from submit start) | p99 ms, slots alone |"
        )
        L.append("|---|---|---|---|---|---|---|---|")
        for shape, levels in shapes.items():
            for k, v in levels.items():
                a, b = v["from_submit_return"], v["from_submit_start"]
                floor = v.get("queueing_floor", {})
                L.append(
                    f"| {shape} | {k} | {v['offered_tasks_per_s']} | {a.get('p50_ms')} "
                    f"| {a.get('p99_ms')} | {b.get('p50_ms')} | {b.get('p99_ms')} "
                    f"| {floor.get('p99_ms')} |"
                )
        L.append("")
        L.append(
            "A root task becomes ready when its project's meta key is written, the last "
            "write of the submit call: 'from ready' counts from the call's return (a lower "
            "bound by at most the reply's transit); 'from submit start' adds the whole "
            "submit (an upper bound). 'tasks': every task arrives on its own (Poisson); "
            "'ticks': a burst every 50 ms. 'slots alone': the p99 wait of a dispatcher "
            "without any overhead on the same arrivals (bench/latency.py)."
        )
        L.append("")
        L.append(
            "p99 <= 20 ms from the submit call's start at 50 %: "
            + ", ".join(
                f"{shape} {_fmt(lat.get(f'{shape}_p99_le_20ms_at_50'))}" for shape in shapes
            )
            + "."
        )
        L.append("")
    fo = results.get("failover", {})
    if fo.get("modes"):
        L.append("## Leader failover (`" + fo.get("command", "") + "`)")
        L.append("")
        L.append("| mode | trials | median s | worst s | new leader seen (median s) |")
        L.append("|---|---|---|---|---|")
        for k, v in fo["modes"].items():
            L.append(
                f"| {k} (TTL {v['election_ttl_s']} s) | {v['trials']} | {v['median_s']} | "
                f"{v['worst_s']} | {v.get('new_leader_seen_median_s')} |"
            )
        ref = fo.get("reference_client_go", {})
        L.append(
            f"| reference: client-go defaults (lease {ref.get('lease_duration_s')} s, renew "
            f"{ref.get('renew_deadline_s')} s, retry {ref.get('retry_period_s')} s) | - | - | "
            "~15-17 (crash) | - |"
        )
        L.append("")
        L.append(
            f"Targets: SIGKILL fast median <= 1 s "
            f"{_fmt(fo.get('target_sigkill_fast_median_le_1s'))}; without fast failover "
            f"<= TTL + 1 s {_fmt(fo.get('target_sigkill_no_fast_le_ttl_plus_1s'))} (worst case);"
            f" SIGTERM <= 0.5 s {_fmt(fo.get('target_sigterm_le_0_5s'))}."
        )
        L.append("")
    da = results.get("dead_agent", {})
    if "sigkill" in da:
        L.append("## Dead agent (`" + da.get("command", "") + "`)")
        L.append("")
        L.append(
            f"SIGKILL (stream breaks, agent grace {da['agent_grace_s']} s): median "
            f"{da['sigkill']['median_s']} s, worst {da['sigkill']['worst_s']} s over "
            f"{da['sigkill']['trials']} trials. SIGSTOP (hung, lease TTL "
            f"{da['agent_lease_ttl_s']} s): median {da['sigstop']['median_s']} s."
        )
        L.append("")
    stl = results.get("stealing", {})
    if "imbalance" in stl:
        r, o, i = stl["redistribution"], stl["overhead"], stl["imbalance"]
        L.append("## Work stealing (`" + stl.get("command", "") + "`)")
        L.append("")
        d = r["drop_to_thief_start"]
        L.append(
            f"- Redistribution latency (steal committed -> thief starts, {d.get('n')} stolen "
            f"tasks): p50 {d.get('p50_ms')} ms, p99 {d.get('p99_ms')} ms; the leader's own "
            f"decision -> start mean {r['leader_histogram'].get('mean_ms')} ms. Target p99 < "
            f"100 ms {_fmt(stl.get('target_redistribution_p99_lt_100ms'))}."
        )
        L.append(
            f"- Overhead on a balanced load: on {o['on_tasks_per_s']} vs off "
            f"{o['off_tasks_per_s']} tasks/s -> {o['overhead_pct']} % (target < 5 % "
            f"{_fmt(stl.get('target_overhead_lt_5pct'))}; single runs differ by more than "
            "that on this shared machine)."
        )
        L.append(
            f"- Skewed start ({i['tasks']} tasks on 1 of {i['agents']} agents, scheduler "
            f"core): imbalance {i['imbalance_before']} -> {i['imbalance_after_one_interval']}"
            f" within one interval, cut {i['cut_pct']} % (target > 50 % "
            f"{_fmt(stl.get('target_imbalance_cut_gt_50pct'))})."
        )
        L.append("")
    sc = results.get("scale", {})
    if "submit_s" in sc:
        L.append("## Scale (`" + sc.get("command", "") + "`)")
        L.append("")
        L.append(
            f"{sc['agents']} agents, {sc['tasks']} tasks: submit {sc['submit_s']} s "
            f"({_fmt(sc.get('target_submit_lt_30s'))}), leader RSS "
            f"{sc['leader_rss_running_mib']} MiB running, new leader "
            f"{sc['new_leader_rss_mib']} MiB ({_fmt(sc.get('target_leader_rss_lt_1gib'))}); "
            f"after SIGKILL of the leader: status from the new leader in "
            f"{sc['status_from_new_leader_s']} s, first new assignment in "
            f"{sc['first_new_assignment_s']} s ({_fmt(sc.get('target_rebuild_lt_5s'))})."
        )
        L.append("")
    for name in ("etcd_claims", "stg"):
        r = results.get(name)
        if r:
            L.append(f"## {name} (`{r.get('command', '')}`)")
            L.append("")
            body = {k: v for k, v in r.items() if k not in ("command", "records")}
            if isinstance(r.get("records"), list):
                body["records"] = len(r["records"])
            L.append("```json\n" + json.dumps(body, indent=1, sort_keys=True)[:1500] + "\n```")
            L.append("")
    errors = [k for k, v in results.items() if "error" in v]
    if errors:
        L.append("## Errors")
        L.append("")
        for k in errors:
            L.append(f"- {k}: {results[k]['error']} (`{results[k].get('command', '')}`)")
        L.append("")
    for p in plots:
        L.append(f"![{p}]({p})")
    L.append("")
    return "\n".join(L)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default="")
    p.add_argument("--skip", default="")
    p.add_argument("--report-only", action="store_true", help="rebuild report.md from latest.json")
    a = p.parse_args()
    if a.report_only:
        doc = json.loads((RESULTS / "latest.json").read_text())
        plots = _plots(doc["results"])
        quick = doc["mode"] == "quick"
        (RESULTS / "report.md").write_text(_report(doc["results"], quick, doc["seconds"], plots))
        return
    names = [n for n in ORDER if (not a.only or n in a.only.split(","))]
    names = [n for n in names if n not in a.skip.split(",")]
    RESULTS.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        results[name] = run_one(name, a.quick)
        print(json.dumps(results[name], sort_keys=True), flush=True)
    wall = time.monotonic() - t0
    latest = RESULTS / "latest.json"
    if (a.only or a.skip) and latest.exists():
        # a partial run updates the named benchmarks of the last run of the same mode
        old = json.loads(latest.read_text())
        if old.get("mode") == ("quick" if a.quick else "full"):
            results = {**old["results"], **results}
            results = {k: results[k] for k in ORDER if k in results}
    doc = {
        "mode": "quick" if a.quick else "full",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "seconds": round(wall, 1),
        "results": results,
    }
    (RESULTS / "latest.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    plots = _plots(results)
    (RESULTS / "report.md").write_text(_report(results, a.quick, wall, plots))
    print(f"wrote {RESULTS / 'latest.json'} and {RESULTS / 'report.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
