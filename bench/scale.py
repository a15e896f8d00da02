"""Scale: many agents and one big project; submit time, leader RSS, rebuild after failover.

``python -m bench.scale [--json] [--quick] [--agents N] [--tasks N] [--sdk-agents]
[--no-warm-standby] [--add-batches K] [--profile DIR]``

2 coordinator processes on an embedded etcd; N agents with a no-op handler,
then one project of T tasks (chains of 10). Measured: time until all agents
registered, submit time, the leader's RSS (psutil) idle, after the submit
and after running for 10 s or until 30 % of the tasks succeeded, then
SIGKILL of the leader (fast failover on) and:
time until ``GetStatus`` answers from the new leader, and until the first
task claimed in the new term starts on an agent (the state rebuild).
Right after the submit, ``--add-batches`` AddTasks calls (default 50) of
100 new tasks each (chains of 10; one call is one etcd transaction of at
most 120 writes) grow the running project: the other kind of write into a
big project that must not stall the leader's agents. Also, before the kill: tasks/s
while running (succeeded / seconds since the submit returned) and the agent
leases that ended meanwhile, from the leader's metrics (every agent
heartbeats throughout, so the target is 0: a lease that ends is the
leader's own stall, issue 17), and the rate and CPU ms per task by process
role over a steady window: from 5 % of the tasks done (at most 60 s after the
submit) for 10 s, less when 1,000 tasks/s would pass 30 % sooner; status is
not polled inside it (``tasks_per_s_steady``, ``cpu_ms_per_task_steady``: the
running rate at scale, to set beside ``bench.throughput``'s).
Full: 1,000 agents / 100,000 tasks; ``--quick``: 100 agents / 10,000 tasks.

Agents are light protocol-level agents (``bench._swarm``: one coroutine and
one session stream each, 250 per process) because an SDK agent costs ~6
threads and a thousand of them starve a 2-core machine before the
coordinator is measured; ``--no-warm-standby`` starts the coordinators with
followers that do not keep the mirror (the new leader re-reads everything);
``--sdk-agents`` uses SDK agents (threads, 100 per
process) instead. ``--profile DIR`` samples the leader with py-spy (the
thread holding the GIL, ``bench._profile``) from the submit to the kill: a
flame graph in DIR and the costliest functions in the result, to find what
holds the leader while agent leases run down.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import time
from pathlib import Path
from typing import Any

import psutil

from bench._common import Bench, cpu_ms_per_task, emit, log, parse_args, to_spec, tree_cpu
from bench._profile import sampled, top
from workhive.client import WorkhiveError
from workhive.coordinator.model import TaskSpec

PER_PROCESS = {"sdk": 100, "swarm": 250}
ADD_BATCH = 100
"""Tasks per AddTasks call (chains of 10)."""


_LEASES = {
    # agent leases that ended (expired or revoked) between the submit and the kill:
    # every agent heartbeats throughout, so any is the leader's own doing
    "agent_leases_ended_before_kill": "workhive_lease_expirations_total",
    "claims_lost_to_expired_leases": 'workhive_claims_released_total{reason="lease_expired"}',
}


def _rss_mib(pid: int) -> float:
    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


def _added(batch: int) -> list[TaskSpec]:
    """Batch ``batch`` of the AddTasks phase: new chains of 10 no-op tasks."""
    return [
        TaskSpec(
            id=f"a{batch}-{i // 10}-{i % 10}",
            depends_on=(f"a{batch}-{i // 10}-{i % 10 - 1}",) if i % 10 else (),
            estimate=0.001,
        )
        for i in range(ADD_BATCH)
    ]


def _first_start_after(b: Bench, wall: float, min_term: int) -> float | None:
    best: float | None = None
    for path in b.run_dir.glob("agents-*.log"):
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                if not line.startswith("START "):
                    continue
                parts = line.split()
                if len(parts) < 6:
                    continue
                t, term = float(parts[1]), int(parts[5])
                if t >= wall and term > min_term and (best is None or t < best):
                    best = t
    return best


def run(
    quick: bool,
    agents: int | None = None,
    tasks: int | None = None,
    sdk: bool = False,
    warm_standby: bool = True,
    profile: Path | None = None,
    add_batches: int = 50,
) -> dict[str, Any]:
    n_agents = agents or (100 if quick else 1000)
    n_tasks = tasks or (10_000 if quick else 100_000)
    dag = [
        (f"c{i // 10}-{i % 10}", [f"c{i // 10}-{i % 10 - 1}"] if i % 10 else [])
        for i in range(n_tasks)
    ]
    kind = "sdk" if sdk else "swarm"
    res: dict[str, Any] = {
        "benchmark": "scale",
        "agents": n_agents,
        "agent_kind": kind,
        "tasks": n_tasks,
    }
    res["warm_standby"] = warm_standby
    args = [] if warm_standby else ["--no-warm-standby"]
    with (
        Bench(coordinators=2, coordinator_args=args, metrics=True) as b,
        contextlib.ExitStack() as profiling,
    ):
        assert b.client is not None
        procs = max(1, -(-n_agents // PER_PROCESS[kind]))
        t0 = time.monotonic()
        b.spawn_agents(n_agents, mode="noop", processes=procs, swarm=not sdk)
        b.wait_agents(n_agents, timeout=180)
        res["agents_registered_s"] = round(time.monotonic() - t0, 2)
        log(f"scale: {n_agents} agents registered in {res['agents_registered_s']} s")
        leader = b.leader()
        assert leader.popen is not None
        res["leader_rss_idle_mib"] = _rss_mib(leader.popen.pid)
        spec = to_spec("big", dag)
        m0 = b.leader_samples()
        if profile:
            profiling.enter_context(sampled({"leader": leader.popen.pid}, profile))
        res["submit_s"] = round(b.submit(spec), 2)
        submitted = time.monotonic()
        log(f"scale: submit {res['submit_s']} s")
        res["leader_rss_after_submit_mib"] = _rss_mib(leader.popen.pid)
        adds = []
        for k in range(add_batches):
            t_add = time.monotonic()
            b.client.add_tasks("big", _added(k))
            adds.append(time.monotonic() - t_add)
        if adds:
            res["add_tasks_s"] = {"batches": len(adds), "tasks_each": ADD_BATCH}
            res["add_tasks_s"] |= {"max": round(max(adds), 2), "total": round(sum(adds), 2)}
            log(f"scale: {len(adds)} AddTasks of {ADD_BATCH} in {sum(adds):.2f} s")
        # run until 5 % of the tasks are done (at most 60 s: the submit's own
        # burst of first assignments is behind), then a steady window of 10 s
        # or until 30 %: the leader is killed while most of the work remains
        # (status is polled every 0.5 s until then, not inside the window: a
        # status of a 100k-task project and 1,000 agents costs the leader too)
        steady0: tuple[float, int, dict[int, tuple[str, float]]] | None = None
        until = time.monotonic() + 60
        while steady0 is None and time.monotonic() < until:
            done = b.counts("big").get("succeeded", 0)
            if done >= n_tasks * 0.05:
                steady0 = (time.monotonic(), done, tree_cpu())
            else:
                time.sleep(0.5)
        if steady0 is not None:  # 10 s, shorter if 1,000 tasks/s would pass 30 % sooner
            time.sleep(min(10.0, max(0.0, (n_tasks * 0.3 - steady0[1]) / 1000)))
        res["leader_rss_running_mib"] = _rss_mib(leader.popen.pid)
        counts = b.counts("big")
        res["succeeded_before_kill"] = counts.get("succeeded", 0)
        res["tasks_per_s_running"] = round(
            res["succeeded_before_kill"] / (time.monotonic() - submitted), 1
        )
        if steady0 is not None:
            ran = res["succeeded_before_kill"] - steady0[1]
            res["tasks_per_s_steady"] = round(ran / (time.monotonic() - steady0[0]), 1)
            after = tree_cpu()
            res["cpu_ms_per_task_steady"] = cpu_ms_per_task(steady0[2], after, ran)
            # the same window, the leader and the follower apart (both are "coordinator")
            lead = leader.popen.pid
            for part, mine in (("leader", lead.__eq__), ("follower", lead.__ne__)):
                before_part = {p: v for p, v in steady0[2].items() if mine(p)}
                after_part = {p: v for p, v in after.items() if mine(p)}
                split = cpu_ms_per_task(before_part, after_part, ran)
                res["cpu_ms_per_task_steady"][f"coordinator_{part}"] = split.get("coordinator", 0.0)
        m1 = b.leader_samples()
        profiling.close()  # the profile ends at the kill
        for name, metric in _LEASES.items():
            res[name] = int(m1.get(metric, 0) - m0.get(metric, 0))
        st = b.client.status()
        old_term = st.leader.term
        wall = time.time()
        t_kill = time.monotonic()
        leader.signal(signal.SIGKILL)
        leader.popen.wait(timeout=10)
        answered: float | None = None
        while time.monotonic() < t_kill + 120:
            with contextlib.suppress(WorkhiveError):
                st = b.client.status("big")
                if st.leader.term > old_term and st.projects:
                    answered = time.monotonic()
                    break
            time.sleep(0.02)
        res["status_from_new_leader_s"] = round(answered - t_kill, 3) if answered else None
        first: float | None = None
        while time.monotonic() < t_kill + 120:
            first = _first_start_after(b, wall, old_term)
            if first is not None:
                break
            time.sleep(0.2)
        res["first_new_assignment_s"] = round(first - wall, 3) if first else None
        new_leader = b.leader()
        assert new_leader.popen is not None
        res["new_leader_rss_mib"] = _rss_mib(new_leader.popen.pid)
        log(f"scale: {res}")
    if profile:
        res["profile"] = top(profile / "leader.txt")
        res["profile_dir"] = str(profile)
    res["target_submit_lt_30s"] = res["submit_s"] < 30
    res["target_leader_rss_lt_1gib"] = (
        max(res["leader_rss_running_mib"], res["new_leader_rss_mib"]) < 1024
    )
    res["target_no_lease_expired"] = res["agent_leases_ended_before_kill"] == 0
    rebuild = res["first_new_assignment_s"]
    res["target_rebuild_lt_5s"] = rebuild is not None and rebuild < 5
    return res


def _extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agents", type=int, default=None)
    p.add_argument("--tasks", type=int, default=None)
    p.add_argument("--sdk-agents", action="store_true", help="SDK agents (threads) instead")
    p.add_argument("--no-warm-standby", action="store_true", help="followers keep no mirror")
    p.add_argument("--add-batches", type=int, default=50, help="AddTasks calls after the submit")
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="py-spy the leader from the submit to the kill: flame graph into this directory",
    )


def main() -> None:
    a = parse_args(__doc__ or "", _extra)
    res = run(
        a.quick, a.agents, a.tasks, a.sdk_agents, not a.no_warm_standby, a.profile, a.add_batches
    )
    emit(res, a.json)


if __name__ == "__main__":
    main()
