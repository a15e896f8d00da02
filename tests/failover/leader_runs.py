"""Every leader fault, many runs: does any task run twice when only the leader
died? (issue 17, "zero re-execution on leader loss").

``python -m tests.failover.leader_runs [--runs 20] [--only sigkill-leader,...]``

Each run is one scenario of ``tests/failover/scenarios.py`` (SIGKILL, SIGTERM,
SIGSTOP past the election TTL) or of ``tests/partitions/scenarios.py`` (the
leader cut from etcd, from its agents, its link delayed 2 s; skipped where
network namespaces cannot be made) against a fresh embedded etcd, audited as
in the tests. Prints one JSON line per run, then one summary line per fault:
runs, runs whose executions equal their tasks, runs where an agent lease
ended (a re-run is then allowed), and re-executions in runs where none did
(the figure that must be 0).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.failover import scenarios as crash
from tests.failover.scenarios import Outcome
from tests.harness.etcd_process import start_etcd
from tests.harness.netns import unavailable
from tests.partitions import scenarios as net


def _on_etcd(run: Callable[[list[str], Path], Outcome]) -> Callable[[Path], Outcome]:
    def go(run_dir: Path) -> Outcome:
        with start_etcd(1) as cluster:
            return run(cluster.endpoints, run_dir)

    return go


FAULTS: dict[str, Callable[[Path], Outcome]] = {
    "sigkill-leader": _on_etcd(crash.sigkill_leader),
    "sigterm-leader": _on_etcd(crash.sigterm_leader),
    "sigstop-leader": _on_etcd(crash.sigstop_leader),
    "leader-etcd-cut": net.leader_etcd_cut,
    "leader-agents-cut": net.leader_agents_cut,
    "leader-link-delayed": net.leader_link_delayed,
}
NEEDS_NETNS = {"leader-etcd-cut", "leader-agents-cut", "leader-link-delayed"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--only", default="", help="comma-separated fault names")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(FAULTS)
    problem = unavailable()
    summary: dict[str, dict[str, int]] = {}
    for name in names:
        if name in NEEDS_NETNS and problem:
            print(json.dumps({"fault": name, "skipped": problem}), flush=True)
            continue
        s = summary.setdefault(
            name, {"runs": 0, "failed": 0, "exact": 0, "lease_ended": 0, "reruns_no_lease_end": 0}
        )
        for i in range(args.runs):
            d = tempfile.mkdtemp(prefix=f"whl-{name}-")
            try:
                out = FAULTS[name](Path(d))
            except AssertionError as exc:  # the run directory is kept for its logs
                s["failed"] += 1
                print(json.dumps({"fault": name, "run": i, "ok": False, "error": str(exc)[:500]}))
                continue
            a = out.audit
            assert a is not None
            ended = int(out.info.get("agent_leases_ended", 0) or 0)  # type: ignore[call-overload]
            s["runs"] += 1
            s["exact"] += a.executions == a.tasks
            s["lease_ended"] += ended > 0
            if not ended:
                s["reruns_no_lease_end"] += a.executions - a.tasks
            row = {**out.to_dict(), "executions": a.executions, "audit_ok": a.ok, "run": i}
            print(json.dumps(row), flush=True)
            shutil.rmtree(d, ignore_errors=True)
    for name, s in summary.items():
        print(json.dumps({"fault": name, "summary": s}), flush=True)


if __name__ == "__main__":
    main()
