"""Measure time to recover per failover scenario: the README table.

Runs each scenario of the failover suite (``tests/failover/scenarios.py``, the
same code the tests run) K times against etcd in Docker containers built from
the local image, and prints a markdown table (median and worst time to
recover) followed by one JSON object with every run. Each run is audited by
the invariant checker; a run that fails is reported, not hidden.

    .venv/bin/python tools/recovery_table.py            # K=5, every scenario
    .venv/bin/python tools/recovery_table.py --runs 3 --only sigkill-leader,kill-agents

Needs a Docker daemon and the ``workhive-etcd:3.5`` image
(``tools/build_etcd_image.sh``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

from tests.failover import scenarios as s  # noqa: E402
from tests.harness.docker_env import docker_problem  # noqa: E402
from tests.harness.etcd_container import EtcdContainer, start_cluster, start_single  # noqa: E402

Runner = Callable[[Path, int], s.Outcome]

# name -> (fault description, what "recover" measures, etcd needed, runner)
# etcd needed: "shared" (one container for all such runs), "own" (a fresh
# member: the scenario disturbs it), "cluster" (a fresh 3-member cluster).
SCENARIOS: dict[str, tuple[str, str, str]] = {
    "sigkill-leader": (
        "SIGKILL the leader",
        "first task started by the new leader",
        "shared",
    ),
    "sigterm-leader": (
        "SIGTERM the leader (graceful handoff)",
        "first task started by the new leader",
        "shared",
    ),
    "sigstop-leader": (
        f"SIGSTOP the leader {s.SIGSTOP_HOLD:.0f} s (> election TTL {s.ELECTION_TTL} s)",
        "first task started by the new leader",
        "shared",
    ),
    "etcd-pause": (
        f"pause the etcd container {max(s.ELECTION_TTL, s.AGENT_LEASE_TTL) + 2} s",
        "first task started after unpause",
        "own",
    ),
    "etcd-restart": (
        "restart the etcd container",
        "first task started after etcd is back",
        "own",
    ),
    "etcd-raft-leader-kill": (
        "kill etcd's raft leader (3 members)",
        "first task started after the kill",
        "cluster",
    ),
    "kill-agents": (
        "SIGKILL 3 of 5 busy agents",
        "first re-run of a killed agent's task",
        "shared",
    ),
    "agent-stopped-past-lease": (
        "SIGSTOP a busy agent past its 3 s lease",
        "first re-run of its task elsewhere",
        "shared",
    ),
}


def _run_one(name: str, run_dir: Path, seed: int, shared: EtcdContainer | None) -> s.Outcome:
    kind = SCENARIOS[name][2]
    if kind == "shared":
        assert shared is not None
        urls = [shared.url]
        fn = {
            "sigkill-leader": s.sigkill_leader,
            "sigterm-leader": s.sigterm_leader,
            "sigstop-leader": s.sigstop_leader,
            "kill-agents": s.kill_agents,
            "agent-stopped-past-lease": s.agent_stopped_past_lease,
        }[name]
        return fn(urls, run_dir, seed=seed)
    if kind == "own":
        member = start_single()
        try:
            fn2 = s.etcd_pause if name == "etcd-pause" else s.etcd_restart
            return fn2(member, run_dir, seed=seed)
        finally:
            member.stop()
    members = start_cluster(3)
    try:
        return s.etcd_kill_raft_leader(members, run_dir, seed=seed)
    finally:
        for m in members:
            m.stop()


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", "-k", type=int, default=5, help="runs per scenario (5)")
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    ap.add_argument("--json-out", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    problem = docker_problem()
    if problem:
        print(f"recovery_table: {problem}", file=sys.stderr)
        return 69
    names = [n for n in args.only.split(",") if n] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
        return 2
    runs: dict[str, list[dict[str, object]]] = {n: [] for n in names}
    t_start = time.monotonic()
    shared = start_single()
    try:
        for name in names:
            for k in range(args.runs):
                run_dir = Path(tempfile.mkdtemp(prefix=f"wh-recovery-{name}-"))
                try:
                    out = _run_one(name, run_dir, seed=100 + k, shared=shared)
                    row = {**out.to_dict(), "ok": bool(out.audit and out.audit.ok)}
                except Exception as exc:  # reported in the table, not hidden
                    traceback.print_exc()
                    row = {"scenario": name, "ok": False, "error": str(exc)[:500]}
                if row["ok"]:
                    shutil.rmtree(run_dir, ignore_errors=True)
                else:
                    row["logs"] = str(run_dir)  # kept for diagnosis
                print(json.dumps(row), file=sys.stderr, flush=True)
                runs[name].append(row)
    finally:
        shared.stop()
    table = [
        "| scenario | fault | recovery measured to | runs ok | median | worst |"
        " new leader (median) | lost | doubled |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    summary = []
    for name in names:
        fault, measure, _ = SCENARIOS[name]
        rows = runs[name]
        ok = [r for r in rows if r.get("ok")]
        rec = [float(r["recover"]) for r in ok if "recover" in r]  # type: ignore[arg-type]
        nl = [float(r["new_leader"]) for r in ok if "new_leader" in r]  # type: ignore[arg-type]
        lost = sum(int(r.get("lost") or 0) for r in rows)  # type: ignore[call-overload]
        doubled = sum(int(r.get("committed_twice") or 0) for r in rows)  # type: ignore[call-overload]
        med = statistics.median(rec) if rec else None
        worst = max(rec) if rec else None
        nl_med = statistics.median(nl) if nl else None
        table.append(
            f"| {name} | {fault} | {measure} | {len(ok)}/{len(rows)} | {_fmt(med)} |"
            f" {_fmt(worst)} | {_fmt(nl_med)} | {lost} | {doubled} |"
        )
        summary.append(
            {
                "scenario": name,
                "runs": len(rows),
                "ok": len(ok),
                "recover_median": med,
                "recover_worst": worst,
                "new_leader_median": nl_med,
                "lost": lost,
                "doubled": doubled,
            }
        )
    print("\n".join(table))
    doc = {
        "runs_per_scenario": args.runs,
        "seconds": round(time.monotonic() - t_start, 1),
        "cpus": os.cpu_count(),
        "summary": summary,
        "runs": runs,
    }
    print(json.dumps(doc))
    if args.json_out:
        args.json_out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0 if all(r.get("ok") for rows in runs.values() for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
