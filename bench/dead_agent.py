"""Dead agent: SIGKILL (or SIGSTOP) an agent process mid-task -> the task starts elsewhere.

``python -m bench.dead_agent [--json] [--quick] [--trials N]``

One coordinator process on an embedded etcd. Per trial: a victim agent
process (``bench._agent_host --mode hang``) is the only agent when a 1-task
project is submitted, so it takes the task; once its handler started, two
survivor agents (threads in this process) join; then the victim gets the
signal. Measured: signal -> a survivor's handler starts that task.

- SIGKILL: the TCP stream breaks; the coordinator revokes the agent's lease
  after its agent grace (1.5 s default), etcd deletes the claim, the task is
  requeued and reassigned.
- SIGSTOP (a hung agent, stream still open): only the agent lease TTL
  (6 s default) frees the task.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import time
from pathlib import Path
from typing import Any

from bench._common import AgentPool, Bench, emit, log, parse_args, to_spec


def _started_in(path: Path, pid: str) -> bool:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return False
    return any(line.startswith("START ") and f" {pid} " in line for line in text.splitlines())


def trial(b: Bench, sig: signal.Signals, n: int) -> dict[str, Any]:
    prefix = f"v{n}{sig.name[3:4].lower()}"
    assert b.client is not None
    deadline = time.monotonic() + 20
    while b.client.status().agents and time.monotonic() < deadline:
        time.sleep(0.1)  # the previous trial's agents are gone
    (victim,) = b.spawn_agents(1, mode="hang", prefix=prefix)
    log_path = b.run_dir / f"agents-{prefix}0.log"
    b.wait_agents(1)
    pid = f"dead{n}{sig.name}"
    b.submit(to_spec(pid, [("t", [])]))
    deadline = time.monotonic() + 30
    while not _started_in(log_path, pid):
        if time.monotonic() > deadline:
            raise TimeoutError("victim never started the task")
        time.sleep(0.02)
    pool = AgentPool(b.addresses, 2, prefix=f"s{n}{prefix}-")
    try:
        pool.start()
        time.sleep(1.0)  # survivors registered and idle
        t_sig = time.monotonic()
        victim.send_signal(sig)
        got: float | None = None
        while time.monotonic() < t_sig + 30:
            with pool.log.lock:
                hit = [s[0] for s in pool.log.starts if s[1] == pid]
            if hit:
                got = hit[0]
                break
            time.sleep(0.005)
    finally:
        pool.stop()
        victim.kill()
        victim.wait(timeout=10)
    return {"signal": sig.name, "restart_s": round(got - t_sig, 3) if got else None}


def _stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    vals = [r["restart_s"] for r in rows if r["restart_s"] is not None]
    return {
        "trials": len(rows),
        "missed": len(rows) - len(vals),
        "median_s": round(statistics.median(vals), 3) if vals else None,
        "worst_s": round(max(vals), 3) if vals else None,
        "samples_s": vals,
    }


def run(quick: bool, trials: int | None = None) -> dict[str, Any]:
    n = trials or (2 if quick else 5)
    out: dict[str, Any] = {"benchmark": "dead_agent", "agent_lease_ttl_s": 6, "agent_grace_s": 1.5}
    with Bench(coordinators=1) as b:
        for sig, nn in ((signal.SIGKILL, n), (signal.SIGSTOP, max(1, n // 2))):
            rows = []
            for i in range(nn):
                r = trial(b, sig, i)
                log(f"dead_agent {sig.name} #{i}: {r}")
                rows.append(r)
            out[sig.name.lower()] = _stats(rows)
    return out


def _extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trials", type=int, default=None)


def main() -> None:
    a = parse_args(__doc__ or "", _extra)
    emit(run(a.quick, a.trials), a.json)


if __name__ == "__main__":
    main()
