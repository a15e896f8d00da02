"""Living graphs: pull-claim latency, and the cost of growing a big project.

``python -m bench.living [--json] [--quick]``

1. ``claim_next`` latency: 10 pull agents (``PullAgent``, threads in this
   process) on one coordinator; a 2,000-task project (``mixed_dag``: wide
   layers and chains, so claims wait on dependencies too); each agent loops
   claim_next -> complete. Reported: the claim_next call (ask to task in
   hand) and the complete call (send to ack), p50/p99.
2. ``AddTasks`` into a 100,000-task project (no agents: every task stays
   where it is): batches of 1 task depending on a random existing one, and
   of 100 tasks; time per call and the leader process's CPU per added task,
   beside what one full rank recompute of the project costs in this process
   (``analyse``), the work the incremental update avoids.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import psutil

from bench._common import Bench, emit, log, mixed_dag, parse_args, summary_ms, to_spec
from workhive.agent import PullAgent
from workhive.client import Task
from workhive.coordinator.scheduling import analyse


def claim_latency(b: Bench, tasks: int, agents: int) -> dict[str, Any]:
    spec = to_spec("pull", mixed_dag(tasks, seed=5))
    claims: list[float] = []
    completes: list[float] = []
    lock = threading.Lock()
    pulls = [
        PullAgent(b.addresses, agent_id=f"pull-{i}", max_held=1).start() for i in range(agents)
    ]
    time.sleep(1.0)  # sessions open
    b.submit(spec)
    t0 = time.monotonic()

    def work(a: PullAgent) -> None:
        while True:
            s = time.monotonic()
            t = a.claim_next(wait=3.0)
            took = time.monotonic() - s
            if t is None:
                return
            s = time.monotonic()
            a.complete(t, {"ok": True})
            done = time.monotonic() - s
            with lock:
                claims.append(took)
                completes.append(done)

    threads = [threading.Thread(target=work, args=(a,)) for a in pulls]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.monotonic() - t0
    for a in pulls:
        a.close(timeout=5)
    return {
        "agents": agents,
        "tasks": tasks,
        "completed": len(claims),
        "claim_next": summary_ms(claims),
        "complete": summary_ms(completes),
        "tasks_per_s": round(len(claims) / wall, 1),
    }


def add_cost(b: Bench, tasks: int, batches: int) -> dict[str, Any]:
    dag = [(f"t{i}", []) for i in range(tasks)]
    spec = to_spec("big", dag)
    log(f"submitting {tasks} tasks")
    submit_s = b.submit(spec)
    time.sleep(2.0)  # the leader folds the project in
    leader = psutil.Process(b.leader().popen.pid)  # type: ignore[union-attr]
    assert b.client is not None
    rng = random.Random(3)
    out: dict[str, Any] = {"project_tasks": tasks, "submit_s": round(submit_s, 1)}
    n = 0
    for size in (1, 100):
        times: list[float] = []
        cpu0 = leader.cpu_times()
        for k in range(batches):
            batch = [
                Task(f"n{size}-{k}-{j}", depends_on=(f"t{rng.randrange(tasks)}",))
                for j in range(size)
            ]
            s = time.monotonic()
            b.client.add_tasks("big", batch)
            times.append(time.monotonic() - s)
            n += size
        cpu1 = leader.cpu_times()
        cpu_ms = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) * 1000
        out[f"batch_{size}"] = {
            "batches": batches,
            "call": summary_ms(times),
            "leader_cpu_ms_per_task": round(cpu_ms / (batches * size), 3),
        }
    s = time.perf_counter()
    analyse(spec)
    out["full_rank_recompute_ms"] = round((time.perf_counter() - s) * 1000, 1)
    out["added"] = n
    return out


def main() -> None:
    args = parse_args(__doc__ or "")
    tasks, big, batches = (500, 20_000, 10) if args.quick else (2000, 100_000, 30)
    result: dict[str, Any] = {"bench": "living", "quick": bool(args.quick)}
    with Bench(coordinators=1) as b:
        log("claim_next latency")
        result["claim"] = claim_latency(b, tasks, 10)
    with Bench(coordinators=1) as b:
        log("AddTasks into a big project")
        result["add_tasks"] = add_cost(b, big, batches)
    emit(result, args.json)


if __name__ == "__main__":
    main()
