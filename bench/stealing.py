"""Work stealing: redistribution latency, overhead, imbalance reduction.

``python -m bench.stealing [--json] [--quick]``

1. Redistribution latency (real cluster): one agent (prefetch 200) takes a
   whole project of 20 ms tasks; then 7 idle agents join and the leader
   steals from the loaded one. Per stolen task: the victim dropping it
   ("stolen by X", sent by the leader right after the steal txn committed)
   -> the thief's handler starting it, both in this process (one clock).
   Also the leader's own figure (scheduler: steal decision -> start), read
   from ``workhive_redistribution_latency_seconds`` (``--metrics-port``).
2. Overhead: the same balanced load (independent 5 ms tasks, 8 agents in a
   helper process), stealing on vs off (``WORK_STEALING_ENABLED=false``),
   alternated, best of each.
3. Imbalance reduction on a skewed start (pure scheduler, simulator):
   std-dev of per-agent load before and one steal interval later.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from typing import Any

from bench._common import AgentPool, Bench, emit, log, parse_args, summary_ms, to_spec
from workhive.coordinator.scheduling.simulator import skewed_start


def _histogram(port: int, name: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(rf'{name}_bucket\{{le="([^"]+)"\}} ([0-9.e+]+)', line)
        if m:
            out[m.group(1)] = float(m.group(2))
        m = re.match(rf"{name}_(sum|count) ([0-9.e+]+)", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def _hist_quantile(h: dict[str, float], q: float) -> float | None:
    buckets = sorted(
        ((float(k) if k != "+Inf" else float("inf"), v) for k, v in h.items() if k[0].isdigit()),
    )
    total = h.get("count", 0.0)
    if not total:
        return None
    for le, cnt in buckets:
        if cnt >= q * total:
            return le
    return None


def redistribution(quick: bool) -> dict[str, Any]:
    tasks = 100 if quick else 200
    with Bench(coordinators=1, metrics=True, env={"WORK_STEALING_INTERVAL": "1000"}) as b:
        xlog = b.run_dir / "exec.jsonl"
        wall: dict[tuple[str, str], float] = {}

        def thief_work(t: Any) -> None:
            wall[(t.project_id, t.task_id)] = time.time()
            time.sleep(0.02)

        first = AgentPool(
            b.addresses,
            1,
            prefetch=tasks,
            prefix="busy",
            work=lambda _t: time.sleep(0.02),
            exec_log=str(xlog),
        )
        rest = AgentPool(b.addresses, 7, prefix="idle", work=thief_work)
        try:
            first.start()
            b.wait_agents(1)
            b.submit(to_spec("skew", [(f"t{i}", []) for i in range(tasks)]))
            time.sleep(1.0)  # every task is queued on the busy agent
            t_join = time.monotonic()
            rest.start()
            b.wait_finished("skew", 120, poll=0.2)
            drops = {}
            for line in xlog.read_text().splitlines():
                d = json.loads(line)
                if d.get("event") == "dropped" and str(d.get("reason", "")).startswith("stolen"):
                    drops[(d["project"], d["task"])] = float(d["t"])
            with rest.log.lock:
                thief = {(s[1], s[2]): s[0] for s in rest.log.starts}
            lat = [wall[k] - drops[k] for k in drops if k in wall]
            port = b.metrics_ports[b.leader().name]
            h = _histogram(port, "workhive_redistribution_latency_seconds")
            st = b.client.status() if b.client else None
            metrics = dict(st.metrics) if st else {}
            first_thief = min(thief.values()) - t_join if thief else None
        finally:
            rest.stop()
            first.stop()
    return {
        "tasks": tasks,
        "stolen_and_started": len(lat),
        "drop_to_thief_start": summary_ms(lat),
        "join_to_first_thief_start_s": round(first_thief, 3) if first_thief else None,
        "leader_histogram": {
            "count": h.get("count"),
            "mean_ms": round(h["sum"] / h["count"] * 1000, 2) if h.get("count") else None,
            "p50_le_ms": _q_ms(h, 0.5),
            "p99_le_ms": _q_ms(h, 0.99),
            "note": "leader-side histogram (steal decision -> start)",
        },
        "leader_status_metrics": {
            k: v for k, v in metrics.items() if "steal" in k or "redistribution" in k
        },
    }


def _q_ms(h: dict[str, float], q: float) -> float | None:
    v = _hist_quantile(h, q)
    return None if v is None else round(v * 1000, 2)


def _balanced_run(stealing: bool, n: int) -> float:
    env = {} if stealing else {"WORK_STEALING_ENABLED": "false"}
    with Bench(coordinators=1, env=env) as b:
        b.spawn_agents(8, mode="sleep5")
        b.wait_agents(8)
        b.submit(to_spec("warm", [(f"w{i}", []) for i in range(32)]))
        b.wait_finished("warm", 60)
        w0 = time.time()
        b.submit(to_spec("bal", [(f"t{i}", []) for i in range(n)]))
        b.wait_finished("bal", 300, poll=0.5)
        return n / ((b.last_end("bal") or time.time()) - w0)


def overhead(quick: bool) -> dict[str, Any]:
    n = 800 if quick else 2000
    rounds = 1 if quick else 2
    on: list[float] = []
    off: list[float] = []
    for _ in range(rounds):
        on.append(_balanced_run(True, n))
        off.append(_balanced_run(False, n))
        log(f"stealing overhead: on {on[-1]:.0f}/s off {off[-1]:.0f}/s")
    best_on, best_off = max(on), max(off)
    return {
        "tasks": n,
        "work_ms": 5,
        "on_tasks_per_s": [round(x, 1) for x in on],
        "off_tasks_per_s": [round(x, 1) for x in off],
        "overhead_pct": round((1 - best_on / best_off) * 100, 1),
    }


def imbalance() -> dict[str, Any]:
    before, after, moved = skewed_start(tasks=80, agents=8)
    return {
        "tasks": 80,
        "agents": 8,
        "imbalance_before": round(before, 2),
        "imbalance_after_one_interval": round(after, 2),
        "moved": moved,
        "cut_pct": round((1 - after / before) * 100, 1) if before else None,
    }


def run(quick: bool) -> dict[str, Any]:
    res: dict[str, Any] = {"benchmark": "stealing"}
    res["imbalance"] = imbalance()
    log(f"stealing imbalance: {res['imbalance']}")
    res["redistribution"] = redistribution(quick)
    log(f"stealing redistribution: {res['redistribution']}")
    res["overhead"] = overhead(quick)
    p99 = res["redistribution"]["drop_to_thief_start"].get("p99_ms")
    if p99 is not None:
        res["target_redistribution_p99_lt_100ms"] = p99 < 100
    res["target_overhead_lt_5pct"] = res["overhead"]["overhead_pct"] < 5
    cut = res["imbalance"]["cut_pct"]
    res["target_imbalance_cut_gt_50pct"] = cut is not None and cut > 50
    return res


def main() -> None:
    a = parse_args(__doc__ or "")
    emit(run(a.quick), a.json)


if __name__ == "__main__":
    main()
