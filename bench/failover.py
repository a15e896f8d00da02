"""Leader failover: signal to the leader process -> first new assignment.

``python -m bench.failover [--json] [--quick] [--trials N] [--election-ttl S]``

3 coordinator processes on an embedded etcd; 4 SDK agents (1 slot, 20 ms
tasks) as threads in this process keep a steady stream of work. Each trial
signals the current leader, then records when an agent handler first starts
a task whose claim carries a newer leader term (a new assignment made by the
new leader), on the same monotonic clock as the signal. The victim is then
restarted (it rejoins as a follower) before the next trial.

Modes: SIGKILL with fast failover (default), SIGKILL with
``--no-fast-failover`` (takeover waits for the dead leader's election lease,
``--election-ttl``), and SIGTERM (the leader resigns).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import statistics
import time
from typing import Any

from bench._common import AgentPool, Bench, emit, log, parse_args, to_spec
from workhive.client import WorkhiveError
from workhive.coordinator.local_cluster.ports import wait_for_port

AGENTS = 4
WORK_S = 0.02
CLIENT_GO = {
    "lease_duration_s": 15,
    "renew_deadline_s": 10,
    "retry_period_s": 2,
    "worst_case_takeover_s": [15, 17],
    "note": "k8s.io/client-go leaderelection defaults; a crashed leader is replaced "
    "after the lease expires plus up to one retry period",
}


def trial(b: Bench, pool: AgentPool, sig: signal.Signals, n: int) -> dict[str, Any]:
    assert b.client is not None and b.cluster is not None
    # keep work flowing: enough for ~6 s at full speed
    b.submit(to_spec(f"f{n}", [(f"t{i}", []) for i in range(int(6 * AGENTS / WORK_S))]))
    leader = b.leader()
    st = b.client.status()
    old_term = st.leader.term
    time.sleep(0.5)
    assert leader.popen is not None
    t_sig = time.monotonic()
    leader.signal(sig)
    if sig == signal.SIGKILL:
        leader.popen.wait(timeout=10)
    # first start of a task claimed in a newer term
    first_new: float | None = None
    first_any: float | None = None
    deadline = t_sig + 60
    elected: float | None = None
    next_poll = 0.0
    while time.monotonic() < deadline:
        if elected is None and time.monotonic() >= next_poll:
            next_poll = time.monotonic() + 0.05
            with contextlib.suppress(WorkhiveError):
                st = b.client.status()
                if st.leader.leader_id and st.leader.term > old_term:
                    elected = time.monotonic()
        with pool.log.lock:
            later = [s for s in pool.log.starts if s[0] >= t_sig]
        if later and first_any is None:
            first_any = min(s[0] for s in later)
        newer = [s[0] for s in later if s[4] > old_term]
        if newer:
            first_new = min(newer)
            break
        time.sleep(0.005)
    out = {
        "signal": sig.name,
        "old_leader": leader.name,
        "old_term": old_term,
        "first_new_assignment_s": round(first_new - t_sig, 4) if first_new else None,
        "first_any_start_s": round(first_any - t_sig, 4) if first_any else None,
        "new_leader_seen_s": round(elected - t_sig, 4) if elected else None,
    }
    # restart the victim as a follower
    if leader.alive:
        assert leader.popen is not None
        leader.popen.wait(timeout=15)
    leader.start()
    wait_for_port(leader.port, 30)
    new_leader = b.wait_leader()
    out["new_leader"] = new_leader
    time.sleep(0.3)
    return out


def run_mode(trials: int, sig: signal.Signals, fast: bool, ttl: int, label: str) -> dict[str, Any]:
    args = ["--election-ttl", str(ttl)]
    if not fast:
        args.append("--no-fast-failover")
    rows = []
    with Bench(coordinators=3, coordinator_args=args) as b:
        pool = AgentPool(b.addresses, AGENTS, work=lambda _t: time.sleep(WORK_S))
        try:
            pool.start()
            b.wait_agents(AGENTS)
            for n in range(trials):
                r = trial(b, pool, sig, n)
                log(f"failover {label} #{n}: {r}")
                rows.append(r)
        finally:
            pool.stop()
    vals = [r["first_new_assignment_s"] for r in rows if r["first_new_assignment_s"] is not None]
    return {
        "signal": sig.name,
        "fast_failover": fast,
        "election_ttl_s": ttl,
        "trials": len(rows),
        "missed": len(rows) - len(vals),
        "median_s": round(statistics.median(vals), 3) if vals else None,
        "worst_s": round(max(vals), 3) if vals else None,
        "best_s": round(min(vals), 3) if vals else None,
        "samples_s": vals,
        "new_leader_seen_median_s": _median([r["new_leader_seen_s"] for r in rows]),
    }


def _median(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return round(statistics.median(vals), 3) if vals else None


def run(quick: bool, trials: int | None = None, ttl: int = 5) -> dict[str, Any]:
    n = trials or (3 if quick else 20)
    modes = {
        "sigkill_fast": run_mode(n, signal.SIGKILL, True, ttl, "sigkill_fast"),
        "sigkill_no_fast": run_mode(n, signal.SIGKILL, False, ttl, "sigkill_no_fast"),
        "sigterm": run_mode(n, signal.SIGTERM, True, ttl, "sigterm"),
    }
    res: dict[str, Any] = {
        "benchmark": "failover",
        "agents": AGENTS,
        "coordinators": 3,
        "modes": modes,
        "reference_client_go": CLIENT_GO,
    }
    f, s, t = modes["sigkill_fast"], modes["sigkill_no_fast"], modes["sigterm"]
    if f["median_s"] is not None:
        res["target_sigkill_fast_median_le_1s"] = f["median_s"] <= 1.0
    if s["worst_s"] is not None:
        res["target_sigkill_no_fast_le_ttl_plus_1s"] = s["worst_s"] <= ttl + 1.0
    if t["median_s"] is not None:
        res["target_sigterm_le_0_5s"] = t["median_s"] <= 0.5
        res["sigterm_worst_le_0_5s"] = t["worst_s"] <= 0.5
    return res


def _extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trials", type=int, default=None)
    p.add_argument("--election-ttl", type=int, default=5)


def main() -> None:
    a = parse_args(__doc__ or "", _extra)
    emit(run(a.quick, a.trials, a.election_ttl), a.json)


if __name__ == "__main__":
    main()
